"""The parent's PostgreSQL ``backup_manifest``: the file ``pg_basebackup --incremental`` is given.

The parent set stores it as an encrypted payload whose manifest.json records both the sha256 of
the stored bytes and the sha256 of the plain file. Two ways lead back to the plain file, and both
end with the plain sha256 proven before pg_basebackup sees it (a wrong manifest would make the
server send the wrong blocks, an incremental that restores to silently broken data):

1. **the worker's kept copy**: every base backup run of a 17+ server keeps its own plain
   backup_manifest (0600, in ``<base_backup.staging_dir>/backup-manifests/``, the newest few)
   after its set is published.
   In ``public_key`` mode this is the only way: the backup host holds the public key alone and
   cannot decrypt anything it stored, by design, and that must not change for incrementals.
2. **the stored payload** (``symmetric`` mode only, where the backup's passphrase decrypts it):
   downloaded, its stored sha256 proven before decrypting (as ``decrypt.download_verified`` always
   does), decrypted into the run's private staging directory.

When neither works (another worker took the parent, public_key mode), ParentManifestUnavailable
says so in one line; the auto mode then takes a full backup.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hms_dr.catalog import BackupSet, key_for
from hms_dr.crypto import DecryptionKey, EncryptionKey, prepare_decryption
from hms_dr.decrypt import decrypt_to_file, download_verified
from hms_dr.digests import PlainDigest
from hms_dr.encryption_mode import EncryptionMode
from hms_dr.errors import ChecksumMismatch, PreflightFailed
from hms_dr.manifest import BackupKind, Payload
from hms_dr.physical.incremental import PG_MANIFEST_FORMAT

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

KEPT_MANIFESTS_SUBDIR = "backup-manifests"
KEPT_MANIFESTS = 3  # the newest sets' files: the next run's parent is the newest one
CHUNK_BYTES = 1 << 20


class ParentManifestUnavailable(PreflightFailed):
    """The parent's backup_manifest cannot be brought back to its proven plain bytes here."""


def kept_manifest_path(staging_dir: Path, backup_set_id: str) -> Path:
    return staging_dir / KEPT_MANIFESTS_SUBDIR / f"{backup_set_id}.backup_manifest"


def keep_backup_manifest(staging_dir: Path, backup_set_id: str, plain_manifest: Path) -> None:
    """Keep a published set's plain backup_manifest for the next run (0600, in a 0700 folder),
    and drop all but the newest KEPT_MANIFESTS."""
    folder = staging_dir / KEPT_MANIFESTS_SUBDIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = kept_manifest_path(staging_dir, backup_set_id)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, plain_manifest.open("rb") as source:
        shutil.copyfileobj(source, out, CHUNK_BYTES)
    partial.replace(target)
    for old in sorted(folder.glob("*.backup_manifest"), reverse=True)[KEPT_MANIFESTS:]:
        old.unlink(missing_ok=True)


def _pg_manifest_payload(parent: BackupSet) -> Payload:
    for payload in parent.manifest.payloads:
        if payload.format == PG_MANIFEST_FORMAT:
            return payload
    raise ParentManifestUnavailable(f"base set {parent.backup_set_id} has no PostgreSQL backup_manifest payload")


def _file_digest(path: Path) -> PlainDigest:
    digest = PlainDigest()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest(chunk)
    return digest


def _proven(payload: Payload, digest: PlainDigest) -> bool:
    """Only the plain sha256 the backup recorded proves a plain file (a size alone does not)."""
    return (
        bool(payload.plain_sha256)
        and digest.sha256 == payload.plain_sha256
        and (payload.plain_size_bytes is None or digest.size_bytes == payload.plain_size_bytes)
    )


def fetch_parent_manifest(
    store: Store,
    cluster: str,
    parent: BackupSet,
    *,
    encryption_key: EncryptionKey,
    staging_dir: Path,
    workdir: Path,
    gpg_home_dir: Path,
) -> Path:
    """The parent's plain backup_manifest as a new 0600 file in ``workdir``, proven by the plain
    sha256 its manifest.json records; ParentManifestUnavailable (one line) otherwise."""
    payload = _pg_manifest_payload(parent)
    destination = workdir / f"parent-{parent.backup_set_id}.backup_manifest"
    kept = kept_manifest_path(staging_dir, parent.backup_set_id)
    if kept.is_file():
        if _proven(payload, _file_digest(kept)):
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, kept.open("rb") as source:
                shutil.copyfileobj(source, out, CHUNK_BYTES)
            if _proven(payload, _file_digest(destination)):
                log.info(
                    "parent backup_manifest of set %s: this worker's kept copy, plain sha256 proven",
                    parent.backup_set_id,
                )
                return destination
            destination.unlink(missing_ok=True)
        log.warning("the kept backup_manifest %s does not match set %s: ignored", kept, parent.backup_set_id)
    if encryption_key.mode is not EncryptionMode.SYMMETRIC:
        raise ParentManifestUnavailable(
            f"the backup_manifest of parent set {parent.backup_set_id} is not kept on this worker, and with "
            "public_key encryption the backup host cannot decrypt the stored copy",
            hint="take a full base backup (backup_type full); later incrementals then chain to it from this worker",
        )
    object_key = key_for(cluster, BackupKind.BASE, parent.backup_set_id, payload.name)
    encrypted = workdir / f"parent-{payload.name}"
    download_verified(store, object_key, payload, encrypted)  # the stored sha256, before decrypting
    try:
        imported = prepare_decryption(
            gpg_home_dir, DecryptionKey(EncryptionMode.SYMMETRIC, passphrase=encryption_key.passphrase)
        )
        digest = decrypt_to_file(encrypted, payload.name, imported, destination)
    finally:
        encrypted.unlink(missing_ok=True)
    if not _proven(payload, digest):
        destination.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"the backup_manifest of parent set {parent.backup_set_id} decrypted to bytes that differ from "
            "the plain sha256 its manifest records"
        )
    log.info(
        "parent backup_manifest of set %s: decrypted from %s, plain sha256 proven",
        parent.backup_set_id,
        store.describe(object_key),
    )
    return destination
