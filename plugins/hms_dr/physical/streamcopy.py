"""The copy step of the streamed method: pg_basebackup's stdout, proven, into the store.

One run of ``pg_basebackup -D - -X fetch`` (a temporary slot holds the server's WAL meanwhile)
flows through ``StreamedBaseBackup`` (sizes and SHA-256 of every file, WAL and manifest set
aside) and ``zstd | gpg`` into the store's multipart upload of base.tar. The stream is proven
against its backup_manifest and its WAL parsed by pg_waldump before the end of base.tar is handed
on, so a stream that fails any check never completes its upload. Then pg_wal.tar (built from the
staged WAL files as it is uploaded) and backup_manifest follow. Staging holds the WAL of the
backup window and the manifest, never the cluster.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from hms_dr.physical.backup_manifest import parse_backup_manifest
from hms_dr.physical.pgbasebackup import StreamingPgBasebackup
from hms_dr.physical.staging import PAYLOAD_FORMATS, PAYLOAD_SUFFIX, CopiedBackup, CopyJob, store_stream
from hms_dr.physical.streamed import StagingBudget, StreamedBaseBackup, check_against_manifest
from hms_dr.physical.tarstream import ChunkReader, tar_of_files
from hms_dr.physical.verifybackup import (
    BACKUP_MANIFEST,
    BASE_TAR,
    IN_THE_STREAM,
    WAL_TAR,
    Verification,
    parse_backup_wal,
)
from hms_dr.physical.walhold import wal_held
from hms_dr.units import human_bytes

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def stream_base_backup(job: CopyJob, *, staging_limit_bytes: int) -> CopiedBackup:
    """Copy, prove and store one base backup without staging the cluster: only its WAL and
    backup_manifest, within ``staging_limit_bytes`` besides the WAL."""
    pg = job.pg
    staging = job.workdir / "stream"
    staging.mkdir(mode=0o700)
    budget = StagingBudget(staging_limit_bytes)
    result = CopiedBackup()

    def prove(backup: StreamedBaseBackup) -> None:
        raw = backup.manifest_path.read_bytes()
        check_against_manifest(raw, backup)
        pg_manifest = parse_backup_manifest(raw, where=f"{BACKUP_MANIFEST} of the stream")
        started = time.monotonic()
        parse_backup_wal(pg, backup.wal_dir, pg_manifest, where=staging)
        result.seconds["verify"] = time.monotonic() - started
        log.info(
            "streamed check passed: %d files match backup_manifest (size and SHA-256), its checksum holds; "
            "pg_waldump %s read the backup's WAL (%s) in %.1f s",
            len(backup.files),
            pg.version,
            human_bytes(budget.wal_bytes),
            result.seconds["verify"],
        )

    with (
        wal_held(job.conn),
        StreamingPgBasebackup(
            job.conn,
            pg,
            staging,
            label=job.label,
            max_rate_kib_s=job.max_rate_kib_s,
            incremental_manifest=job.incremental_manifest,
        ) as copy,
    ):
        backup = StreamedBaseBackup(
            copy.stdout,  # type: ignore[arg-type]
            staging=staging,
            budget=budget,
            source_ended=copy.ended,
            verify_at_end=prove,
        )
        result.payloads.append(
            store_stream(
                job.store,
                job.payload_key(BASE_TAR + PAYLOAD_SUFFIX),
                ChunkReader(backup.base_tar_chunks()),  # type: ignore[arg-type]
                payload_name=BASE_TAR + PAYLOAD_SUFFIX,
                payload_format=PAYLOAD_FORMATS[BASE_TAR],
                compressor=job.compressor,
                encryption=job.encryption,
                expected_bytes=job.expected_bytes,
            )
        )
    # pg_basebackup's time is the stream's; what the upload of base.tar took after the stream
    # ended (the compressor's and the store's tail) counts as upload.
    result.seconds["pg_basebackup"] = copy.seconds
    upload_tail = max(0.0, time.monotonic() - copy.started - copy.seconds)
    log.info(
        "pg_basebackup streamed %s in %.1f s (base.tar stored as it came; staged: %s of WAL, %s besides)",
        human_bytes(backup.bytes_read),
        copy.seconds,
        human_bytes(budget.wal_bytes),
        human_bytes(budget.other_bytes),
    )

    started = time.monotonic()
    wal_files = [(name, backup.wal_dir / name) for name in sorted(backup.wal_files)]
    result.payloads.append(
        store_stream(
            job.store,
            job.payload_key(WAL_TAR + PAYLOAD_SUFFIX),
            ChunkReader(tar_of_files(wal_files)),  # type: ignore[arg-type]
            payload_name=WAL_TAR + PAYLOAD_SUFFIX,
            payload_format=PAYLOAD_FORMATS[WAL_TAR],
            compressor=job.compressor,
            encryption=job.encryption,
        )
    )
    for _, path in wal_files:
        path.unlink()
    with backup.manifest_path.open("rb") as manifest:
        result.payloads.append(
            store_stream(
                job.store,
                job.payload_key(BACKUP_MANIFEST + PAYLOAD_SUFFIX),
                manifest,
                payload_name=BACKUP_MANIFEST + PAYLOAD_SUFFIX,
                payload_format=PAYLOAD_FORMATS[BACKUP_MANIFEST],
                compressor=job.compressor,
                encryption=job.encryption,
            )
        )
    result.seconds["upload"] = upload_tail + time.monotonic() - started
    result.raw_manifest = backup.manifest_path.read_bytes()
    result.backup_label = backup.backup_label
    result.staged_peak_bytes = budget.staged_bytes
    result.verification = Verification(
        f"hms-dr streamed check (SHA-256 of every file), pg_waldump {pg.version}",
        extracted_bytes=budget.wal_bytes,
        extract_seconds=0.0,
        verify_seconds=result.seconds.get("verify", 0.0),
        method=IN_THE_STREAM,
    )
    return result
