"""pg_basebackup's staged output on its way to the store: one payload per file, ``zstd | gpg``.

Each staged file streams through the compressor and gpg into ``store.put`` while a tap hashes its
plain bytes, so the payload carries both proofs: sha256 of the stored bytes and of the plain tar.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hms_dr.digests import PlainDigest
from hms_dr.errors import BackupVerificationFailed
from hms_dr.manifest import Payload
from hms_dr.physical.progress import ProgressLog
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, BASE_TAR, WAL_TAR
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

PAYLOAD_SUFFIX = ".zst.gpg"
PAYLOAD_FORMATS = {
    BASE_TAR: "pg_basebackup-base-tar",
    WAL_TAR: "pg_basebackup-wal-tar",
    BACKUP_MANIFEST: "pg_backup_manifest",
}
TABLESPACE_TAR_FORMAT = "pg_basebackup-tablespace-tar"


@dataclass(frozen=True)
class StagedFile:
    """One file of pg_basebackup's output and the payload it becomes."""

    path: Path
    payload_name: str
    format: str


def staged_files(tar_dir: Path) -> list[StagedFile]:
    """pg_basebackup's output as payloads: base.tar, pg_wal.tar, tablespace tars, backup_manifest."""
    files = []
    for path in sorted(tar_dir.iterdir()):
        fmt = PAYLOAD_FORMATS.get(path.name) or (
            TABLESPACE_TAR_FORMAT if path.name.removesuffix(".tar").isdigit() else None
        )
        if fmt is None:
            raise BackupVerificationFailed(f"unexpected file {path.name!r} in pg_basebackup's output {tar_dir}")
        files.append(StagedFile(path, path.name + PAYLOAD_SUFFIX, fmt))
    missing = set(PAYLOAD_FORMATS) - {f.path.name for f in files}
    if missing:
        raise BackupVerificationFailed(f"pg_basebackup's output {tar_dir} lacks {', '.join(sorted(missing))}")
    return files


def zstd_stage(level: int, threads: int) -> Stage:
    return Stage("zstd", ["zstd", "-q", "-c", f"-{level}", f"-T{threads}"])


def store_staged_file(store: Store, key: str, staged: StagedFile, *, compressor: Stage, encryption: Stage) -> Payload:
    """Stream one staged file ``zstd | gpg`` into the store, hashing its plain bytes on the way."""
    started = time.monotonic()
    digest = PlainDigest()
    plain_size = staged.path.stat().st_size
    with ProgressLog(f"storing {staged.payload_name}", lambda: digest.size_bytes, expected_bytes=plain_size):
        with (
            staged.path.open("rb") as source,
            Pipeline([compressor, encryption], source=source, tap=digest, tap_after=0) as pipeline,
        ):
            stored = store.put(key, pipeline.output)  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    log.info(
        "stored %s: %s plain, %s stored (ratio %.2f) in %.1f s, %s",
        store.describe(key),
        human_bytes(digest.size_bytes),
        human_bytes(stored.size_bytes),
        digest.size_bytes / max(stored.size_bytes, 1),
        seconds,
        human_rate(digest.size_bytes, seconds),
    )
    return Payload(
        name=staged.payload_name,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        format=staged.format,
        plain_size_bytes=digest.size_bytes,
        plain_sha256=digest.hash.hexdigest(),
    )
