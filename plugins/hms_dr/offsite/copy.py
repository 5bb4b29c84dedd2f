"""Copying one backup set to the offsite store, and proving or repairing a copy already there.

The order is the primary's: payloads first, each streamed from the primary store into the
offsite store (never held in memory) and then re-read there and proven by the sha256 its
manifest records; the manifest last, byte for byte the primary's. A crash at any point leaves
payloads without a manifest offsite, which is not a set; the next run proves what is already
there and copies only the rest, so each payload is stored once. A primary payload whose bytes do
not hash to its manifest is never stored offsite: the offsite store is told the size and sha256
to expect, and refuses to complete the upload of any other bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hms_dr.catalog import key_for
from hms_dr.errors import ChecksumMismatch, ManifestInvalid, ObjectLocked, ObjectMissing, StoreRefused
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Manifest, Payload, parse_manifest
from hms_dr.progress import ByteCounter
from hms_dr.publish import verify_stored_payload
from hms_dr.store import Expected
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store, StoredObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetCopy:
    """What one set's pass did: copied (new offsite), repaired, or verified (re-read, all good)."""

    kind: BackupKind
    backup_set_id: str
    action: str
    copied_bytes: int
    seconds: float
    finished_at: datetime
    reused: tuple[str, ...] = ()  # payloads an interrupted run had stored whole: proven, not copied again
    repaired: tuple[str, ...] = ()


def read_primary_manifest(primary: Store, cluster: str, kind: BackupKind, backup_set_id: str) -> tuple[bytes, Manifest]:
    """The primary's manifest of the set, as bytes (copied verbatim) and parsed."""
    key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
    raw = primary.get_bytes(key)
    manifest = parse_manifest(raw, where=primary.describe(key))
    if manifest.backup_set_id != backup_set_id or manifest.kind is not kind:
        raise ManifestInvalid(
            f"manifest {primary.describe(key)} describes {manifest.kind.value}/{manifest.backup_set_id}"
        )
    return raw, manifest


def copy_payload(
    primary: Store, offsite: Store, key: str, payload: Payload, *, overwrite: bool, counted: ByteCounter | None = None
) -> int:
    """Stream one payload across (its bytes added to ``counted`` as they pass), then re-read it
    offsite against the manifest's sha256. The offsite store checks the stream against the
    manifest before it commits the object: a damaged primary payload is never stored offsite."""
    progress = None if counted is None else _counting(counted)
    with primary.open(key) as source:
        try:
            stored = offsite.put(
                key, source, overwrite=overwrite, progress=progress, expect=Expected(payload.size_bytes, payload.sha256)
            )
        except ChecksumMismatch as exc:
            raise ChecksumMismatch(
                f"{primary.describe(key)} does not read as its manifest says, not copied offsite: {exc.message}",
                hint="the primary copy is damaged: read the set back on the primary and take a new backup",
            ) from exc
    verify_stored_payload(offsite, key, payload)
    return stored.size_bytes


def _counting(counted: ByteCounter) -> Callable[[int], None]:
    """A put's progress callback (the running total of bytes sent) adding the news to ``counted``."""
    sent = 0

    def progress(total: int) -> None:
        nonlocal sent
        counted.add(total - sent)
        sent = total

    return progress


def is_proven(offsite: Store, key: str, payload: Payload) -> bool:
    """Whether the offsite object re-reads as the manifest's bytes; a mismatch is logged, not raised."""
    try:
        verify_stored_payload(offsite, key, payload)
    except (ChecksumMismatch, ObjectMissing) as exc:
        log.warning("offsite copy is not what its manifest says: %s", exc.message)
        return False
    return True


def copy_set(
    primary: Store,
    offsite: Store,
    cluster: str,
    kind: BackupKind,
    backup_set_id: str,
    leftovers: Mapping[str, StoredObject],
    counted: ByteCounter | None = None,
) -> SetCopy:
    """Copy a set the offsite store lacks; ``leftovers`` are objects an interrupted copy stored
    in its offsite folder (by file name), reused once their sha256 is proven. The bytes copied
    are added to ``counted`` as they pass (the sync's progress line)."""
    started = time.monotonic()
    raw, manifest = read_primary_manifest(primary, cluster, kind, backup_set_id)
    copied = 0
    reused: list[str] = []
    for payload in manifest.payloads:
        key = key_for(cluster, kind, backup_set_id, payload.name)
        leftover = leftovers.get(payload.name)
        if leftover is not None:
            if leftover.size_bytes == payload.size_bytes and is_proven(offsite, key, payload):
                reused.append(payload.name)
                continue
            log.warning(
                "replacing %s, left by an interrupted copy: it is not the manifest's bytes", offsite.describe(key)
            )
            copied += replace_payload(primary, offsite, key, payload)
            continue
        copied += copy_payload(primary, offsite, key, payload, overwrite=False, counted=counted)
    manifest_key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
    offsite.put_bytes(manifest_key, raw)  # the commit point: never over an existing manifest
    if offsite.get_bytes(manifest_key) != raw:
        raise ChecksumMismatch(f"{offsite.describe(manifest_key)} does not read back as the manifest just written")
    return SetCopy(
        kind, backup_set_id, "copied", copied, time.monotonic() - started, manifest.finished_at, reused=tuple(reused)
    )


def replace_payload(primary: Store, offsite: Store, key: str, payload: Payload) -> int:
    """Put a verified copy over a damaged offsite object. Under Object Lock the damaged object is a
    locked version: S3 keeps it (it cannot be deleted before its lock ends) and the new copy becomes
    the current version; an endpoint that refuses even that is reported as ObjectLocked."""
    lock = None
    if offsite.features.supports_object_lock and offsite.exists(key):
        stored = offsite.stat(key)
        if stored.locked_at(datetime.now(UTC)):
            lock = "a legal hold" if stored.legal_hold else f"a lock until {stored.retained_until:%Y-%m-%d}"
            log.warning(
                "%s is damaged and under %s: a verified copy goes on top as a new version; the damaged version "
                "cannot be deleted and stays stored until its lock ends",
                offsite.describe(key),
                lock,
            )
    try:
        return copy_payload(primary, offsite, key, payload, overwrite=True)
    except ObjectLocked:
        raise
    except StoreRefused as exc:
        if lock is None:
            raise
        raise ObjectLocked(
            f"{offsite.describe(key)} is damaged, under {lock}, and the store refused a new version on top: {exc.message}",
            hint="the offsite copy of this set cannot be repaired before the lock ends; the primary still holds it",
        ) from exc


def repair_set(
    primary: Store, offsite: Store, cluster: str, kind: BackupKind, backup_set_id: str, names: Sequence[str]
) -> SetCopy:
    """Copy the named objects of an offsite set again from the primary (payloads first, the
    manifest last when it is among them), each proven offsite."""
    started = time.monotonic()
    raw, manifest = read_primary_manifest(primary, cluster, kind, backup_set_id)
    copied = 0
    repaired: list[str] = []
    for payload in manifest.payloads:
        if payload.name in names:
            copied += replace_payload(primary, offsite, key_for(cluster, kind, backup_set_id, payload.name), payload)
            repaired.append(payload.name)
    manifest_key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
    if MANIFEST_NAME in names or not offsite.exists(manifest_key):
        offsite.put_bytes(manifest_key, raw, overwrite=offsite.exists(manifest_key))
        repaired.append(MANIFEST_NAME)
    log.warning(
        "repaired offsite copy of %s/%s: %s copied again from the primary (%s), each proven by sha256 offsite",
        kind.value,
        backup_set_id,
        ", ".join(repaired),
        human_bytes(copied),
    )
    return SetCopy(
        kind,
        backup_set_id,
        "repaired",
        copied,
        time.monotonic() - started,
        manifest.finished_at,
        repaired=tuple(repaired),
    )


def reverify_set(
    primary: Store, offsite: Store, cluster: str, kind: BackupKind, backup_set_id: str, *, primary_has_set: bool
) -> SetCopy:
    """Re-read every payload of an offsite set against its offsite manifest; repair what fails
    from the primary, or raise ChecksumMismatch when the primary no longer holds the set."""
    started = time.monotonic()
    manifest_key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
    offsite_raw = offsite.get_bytes(manifest_key)
    try:
        manifest = parse_manifest(offsite_raw, where=offsite.describe(manifest_key))
        damaged = [
            p.name
            for p in manifest.payloads
            if not is_proven(offsite, key_for(cluster, kind, backup_set_id, p.name), p)
        ]
    except ManifestInvalid as exc:
        log.warning("%s", exc.message)
        if not primary_has_set:
            raise
        manifest, damaged = None, [MANIFEST_NAME]
    if manifest is not None and not damaged:
        size = manifest.size_bytes
        seconds = time.monotonic() - started
        log.info(
            "re-verified offsite %s/%s: %s, sha256 matches (%s)",
            kind.value,
            backup_set_id,
            human_bytes(size),
            human_rate(size, seconds),
        )
        return SetCopy(kind, backup_set_id, "verified", 0, seconds, manifest.finished_at)
    if not primary_has_set:
        raise ChecksumMismatch(
            f"offsite copy of {kind.value}/{backup_set_id} is damaged ({', '.join(damaged)}) and the primary no longer holds the set",
            hint="it cannot be repaired from here; the other offsite sets and the primary's newer sets are unaffected",
        )
    primary_raw, primary_manifest = read_primary_manifest(primary, cluster, kind, backup_set_id)
    if primary_raw != offsite_raw:
        damaged = [p.name for p in primary_manifest.payloads] + [
            MANIFEST_NAME
        ]  # another manifest: prove everything again
    return repair_set(primary, offsite, cluster, kind, backup_set_id, damaged)
