"""pg_basebackup's output on its way to the store: one payload per file or stream, ``zstd | gpg``.

Each staged file (or, in the streamed method, each stream) flows through the compressor and gpg
into ``store.put`` while a tap hashes its plain bytes, so the payload carries both proofs: sha256
of the stored bytes and of the plain tar.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hms_dr.catalog import key_for
from hms_dr.digests import PlainDigest
from hms_dr.errors import BackupVerificationFailed
from hms_dr.manifest import BackupKind, Payload
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, BASE_TAR, WAL_TAR, Verification
from hms_dr.progress import ProgressLog
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


@dataclass(frozen=True)
class CopyJob:
    """What a copy step (staged or streamed) is asked to do: which cluster, as whom, with which
    programs, into which set of which store, compressed and encrypted how. ``stored_keys`` is
    the caller's list: every key is appended before its upload starts, so a failure anywhere
    lets the caller remove them all."""

    conn: ConnectionInfo
    pg: PgInstall
    store: Store
    cluster: str
    backup_set_id: str
    workdir: Path
    label: str
    expected_bytes: int
    compressor: Stage
    encryption: Stage
    stored_keys: list[str]
    max_rate_kib_s: int | None = None
    incremental_manifest: Path | None = None

    def payload_key(self, payload_name: str) -> str:
        """The key of one payload of the set, recorded in ``stored_keys`` before anything is written."""
        key = key_for(self.cluster, BackupKind.BASE, self.backup_set_id, payload_name)
        self.stored_keys.append(key)
        return key


@dataclass
class CopiedBackup:
    """What a copy step (staged or streamed) leaves for the set: its stored payloads, PostgreSQL's
    own description of the backup (backup_manifest, backup_label), the proof, what it staged and
    the seconds of its steps."""

    payloads: list[Payload] = field(default_factory=list)
    raw_manifest: bytes = b""
    backup_label: str = ""
    verification: Verification | None = None
    staged_peak_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


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
    with staged.path.open("rb") as source:
        return store_stream(
            store,
            key,
            source,
            payload_name=staged.payload_name,
            payload_format=staged.format,
            compressor=compressor,
            encryption=encryption,
            expected_bytes=staged.path.stat().st_size,
        )


def store_stream(
    store: Store,
    key: str,
    source: BinaryIO,
    *,
    payload_name: str,
    payload_format: str,
    compressor: Stage,
    encryption: Stage,
    expected_bytes: int | None = None,
) -> Payload:
    """Stream ``source`` ``zstd | gpg`` into the store as one payload, hashing its plain bytes on
    the way; progress (and an ETA when ``expected_bytes`` is known) goes to the log."""
    started = time.monotonic()
    digest = PlainDigest()
    with (
        ProgressLog(f"storing {payload_name}", lambda: digest.size_bytes, expected_bytes=expected_bytes),
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
        name=payload_name,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        format=payload_format,
        plain_size_bytes=digest.size_bytes,
        plain_sha256=digest.hash.hexdigest(),
    )
