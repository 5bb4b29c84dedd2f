"""Getting a stored payload back to its plain bytes: download it and prove it against its
manifest first, then ``gpg -d | [zstd -d]`` with the plain bytes hashed on their way out.

Every restore path (the logical restore, the base backup's extraction, the WAL source) comes
through here, so a payload is never decrypted before its stored sha256 is proven, a gpg failure
always reads as one ``DecryptionFailed`` line, and a decrypted file is always new and 0600.
The restore key is imported and unlocked once per gpg home by ``crypto.prepare_decryption``
(which decrypts a probe first, alone: see ``crypto._unlock_once``); the functions here take
the ``ImportedKey`` it returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hms_dr.crypto import DecryptionKey, ImportedKey, prepare_decryption
from hms_dr.digests import PlainDigest
from hms_dr.errors import ChecksumMismatch, ToolFailed
from hms_dr.gpghome import gpg_home
from hms_dr.manifest import Payload
from hms_dr.progress import ByteCounter, ProgressLog
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 << 20


def decompression_stage(payload_name: str) -> Stage | None:
    """The decompressor a payload's name calls for (.zst, .gz), or None."""
    stem = payload_name.removesuffix(".gpg")
    if stem.endswith(".zst"):
        return Stage("zstd -d", ["zstd", "-q", "-d", "-c"])
    if stem.endswith(".gz"):
        return Stage("gzip -d", ["gzip", "-d", "-c"])
    return None


def download_verified(store: Store, key: str, payload: Payload, destination: Path) -> float:
    """Copy the stored bytes to ``destination`` (new, 0600) and prove size and sha256 against the
    manifest; ChecksumMismatch (file removed) names the object otherwise. Returns seconds."""
    started = time.monotonic()
    digest = hashlib.sha256()
    done = ByteCounter()
    where = store.describe(key)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            store.open(key) as source,
            ProgressLog(f"download of {where}", lambda: done.value, expected_bytes=payload.size_bytes),
        ):
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                done.add(len(chunk))
                out.write(chunk)
        size = done.value
        if size != payload.size_bytes:
            raise ChecksumMismatch(
                f"{where} is {size} bytes, its manifest says {payload.size_bytes} (truncated or replaced)"
            )
        if digest.hexdigest() != payload.sha256:
            raise ChecksumMismatch(f"{where} does not match the sha256 in its manifest (the stored bytes changed)")
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    log.info(
        "downloaded %s: %s, sha256 matches the manifest, %s",
        store.describe(key),
        human_bytes(size),
        human_rate(size, seconds),
    )
    return seconds


def decrypt_payload(
    source: BinaryIO,
    payload_name: str,
    imported: ImportedKey,
    write: Callable[[bytes], object],
    *,
    digest: PlainDigest | None = None,
) -> PlainDigest:
    """Decrypt (and decompress, as ``payload_name`` says) ``source`` into ``write``, hashing the
    plain bytes; pass ``digest`` to watch the size grow. A gpg failure is DecryptionFailed."""
    digest = digest if digest is not None else PlainDigest()
    stages = [imported.decrypt_stage()]
    decompressor = decompression_stage(payload_name)
    if decompressor is not None:
        stages.append(decompressor)
    try:
        with Pipeline(stages, source=source) as pipeline:
            while chunk := pipeline.output.read(CHUNK_BYTES):
                digest(chunk)
                write(chunk)
    except ToolFailed as exc:
        if exc.tool.startswith("gpg"):
            raise imported.explain(exc) from None
        raise
    return digest


def decrypt_to_file(
    encrypted: Path,
    payload_name: str,
    imported: ImportedKey,
    destination: Path,
    *,
    replace: bool = False,
    expected_bytes: int | None = None,
) -> PlainDigest:
    """Decrypt the proven file ``encrypted`` into ``destination`` (0600; new unless ``replace``),
    removed again when anything fails. Returns the plain bytes' digest. ``expected_bytes``: the
    plain size the manifest records, the total of the progress lines of a long decryption."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(destination, flags, 0o600)
    digest = PlainDigest()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            encrypted.open("rb") as source,
            ProgressLog(f"decryption of {payload_name}", lambda: digest.size_bytes, expected_bytes=expected_bytes),
        ):
            return decrypt_payload(source, payload_name, imported, out.write, digest=digest)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def decrypt_file(
    encrypted: Path, payload_name: str, key: DecryptionKey, destination: Path, *, staging_dir: Path
) -> PlainDigest:
    """``decrypt_to_file`` with ``key`` imported into a throw-away gpg home under ``staging_dir``
    (for one payload; callers decrypting several import the key once and call decrypt_to_file)."""
    with gpg_home(staging_dir) as home:
        imported = prepare_decryption(home, key)
        return decrypt_to_file(encrypted, payload_name, imported, destination)


def plain_matches(payload: Payload, digest: PlainDigest) -> bool:
    """Whether the decrypted bytes are those the backup recorded (what the manifest records of them)."""
    if payload.plain_sha256 and digest.sha256 != payload.plain_sha256:
        return False
    return payload.plain_size_bytes is None or digest.size_bytes == payload.plain_size_bytes
