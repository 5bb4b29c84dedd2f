"""Fetching a payload back: stream it from the store, prove its sha256, decrypt, decompress.

The stored bytes are hashed as they stream in and compared with the manifest before the
decrypted file is handed to anyone; a mismatch deletes the file and names the object. The
decrypted file is private (0600) and lives only as long as the restore needs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hms_dr.crypto import DecryptionKey, decrypt_stage, explain_decryption_failure, gpg_home, prepare_decryption
from hms_dr.errors import ChecksumMismatch, ToolFailed
from hms_dr.manifest import Payload
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

MIB = 1 << 20


def decompression_stage(payload_name: str) -> Stage | None:
    """The decompressor a payload's name calls for (.zst, .gz), or None."""
    stem = payload_name.removesuffix(".gpg")
    if stem.endswith(".zst"):
        return Stage("zstd -d", ["zstd", "-q", "-d", "-c"])
    if stem.endswith(".gz"):
        return Stage("gzip -d", ["gzip", "-d", "-c"])
    return None


def fetch_payload(
    store: Store, key: str, payload: Payload, decryption: DecryptionKey, destination: Path, *, staging_dir: Path
) -> Path:
    """Write the plain payload at ``key`` to ``destination`` (0600) after proving its bytes."""
    started = time.monotonic()
    stored_hash = hashlib.sha256()
    stored_size = 0

    def count(chunk: bytes) -> None:
        nonlocal stored_size
        stored_hash.update(chunk)
        stored_size += len(chunk)

    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, gpg_home(staging_dir) as home:
            prepare_decryption(home, decryption)
            stages = [decrypt_stage(home, decryption)]
            decompressor = decompression_stage(payload.name)
            if decompressor is not None:
                stages.append(decompressor)
            with store.open(key) as source:
                try:
                    with Pipeline(stages, source=source, tap=count, tap_after=0) as pipeline:
                        while chunk := pipeline.output.read(4 * MIB):
                            out.write(chunk)
                except ToolFailed as exc:
                    _check_stored_bytes(store, key, payload, stored_hash.hexdigest(), stored_size, complete=False)
                    if exc.tool.startswith("gpg"):
                        raise explain_decryption_failure(exc.last_stderr_line) from None
                    raise
        _check_stored_bytes(store, key, payload, stored_hash.hexdigest(), stored_size, complete=True)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    log.info(
        "fetched %s: %s stored, sha256 verified, %s plain in %.1f s",
        store.describe(key), human_bytes(stored_size), human_bytes(destination.stat().st_size), seconds,
    )
    return destination


def _check_stored_bytes(store: Store, key: str, payload: Payload, sha256: str, size: int, *, complete: bool) -> None:
    where = store.describe(key)
    if complete and size != payload.size_bytes:
        raise ChecksumMismatch(f"{where} is {size} bytes, the manifest says {payload.size_bytes}")
    if complete and sha256 != payload.sha256:
        raise ChecksumMismatch(f"{where} does not match its manifest sha256 (stored bytes changed or damaged)")
    if not complete and size < payload.size_bytes:
        return  # decryption stopped early; the decryption error is the one to report
