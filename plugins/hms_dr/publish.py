"""Publishing a backup set: prove the stored bytes, then write the manifest last.

The manifest is the commit point: it is only written once every payload of the set has been
re-read from the store and hashes to what the writer computed on the way in. A set is never
published over an existing manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import key_for
from hms_dr.digests import sha256_of_stream
from hms_dr.errors import ChecksumMismatch, HmsDrError
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload, build_manifest, dump_manifest
from hms_dr.records import Record
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadBack(Record):
    """One payload read back from the store: its size, and its sha256 when it was re-read (None:
    checked by size only, store.verify_readback off)."""

    key: str
    size_bytes: int
    sha256: str | None = None
    seconds: float | None = None


def sha256_of_stored(store: Store, key: str) -> tuple[str, int]:
    """Stream an object back from the store and hash it: (sha256 hex, size in bytes)."""
    with store.open(key) as stream:
        return sha256_of_stream(stream)


def verify_stored_payload(store: Store, key: str, expected: Payload) -> ReadBack:
    """Re-read one payload; ChecksumMismatch names the object when size or sha256 differ."""
    started = time.monotonic()
    sha256, size = sha256_of_stored(store, key)
    seconds = time.monotonic() - started
    where = store.describe(key)
    if size != expected.size_bytes:
        raise ChecksumMismatch(f"{where} holds {size} bytes, {expected.size_bytes} were written")
    if sha256 != expected.sha256:
        raise ChecksumMismatch(f"{where} has sha256 {sha256[:16]}…, {expected.sha256[:16]}… was written")
    log.info("read back %s: %s, sha256 matches, %s", where, human_bytes(size), human_rate(size, seconds))
    return ReadBack(key=key, size_bytes=size, sha256=sha256, seconds=round(seconds, 3))


def publish_set(
    store: Store,
    *,
    kind: BackupKind,
    cluster: str,
    backup_set_id: str,
    started_at: datetime,
    finished_at: datetime,
    payloads: list[Payload],
    extra: Mapping[str, Any],
) -> str:
    """Write the set's manifest (never over an existing one); returns its key."""
    for payload in payloads:
        stored = store.stat(key_for(cluster, kind, backup_set_id, payload.name))
        if stored.size_bytes != payload.size_bytes:
            raise ChecksumMismatch(
                f"{store.describe(stored.key)} holds {stored.size_bytes} bytes, the manifest would say {payload.size_bytes}"
            )
    document = build_manifest(
        kind=kind,
        backup_set_id=backup_set_id,
        cluster=cluster,
        started_at=started_at,
        finished_at=finished_at,
        payloads=payloads,
        extra=extra,
    )
    manifest_key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
    store.put_bytes(manifest_key, dump_manifest(document), overwrite=False)
    log.info("published %s set %s: %s", kind.value, backup_set_id, store.describe(manifest_key))
    return manifest_key


def remove_unpublished(store: Store, keys: list[str]) -> None:
    """Delete the payloads a failed run stored before its manifest; a key that cannot be deleted
    is only logged: without a manifest it is an orphan, which retention removes later."""
    for key in keys:
        try:
            if store.exists(key):
                store.delete(key)
                log.info("removed %s left by the failed run", store.describe(key))
        except HmsDrError as exc:
            log.warning("could not remove %s (retention will, as an orphan): %s", store.describe(key), exc)
