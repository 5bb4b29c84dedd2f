"""The copy step of the staged method (``base_backup.method: staged``): tars on disk, then proven, then stored.

``pg_basebackup -Ft -X stream`` writes base.tar, pg_wal.tar, backup_manifest and a tar per
tablespace into staging; pg_verifybackup proves them (an extracted copy before 18, the tars in
place from 18); each file then streams ``zstd | gpg`` into the store and leaves staging. It needs
about 2.2 x the cluster free on the worker, and is what a cluster with tablespaces besides the
default ones takes (pg_basebackup writes only one tablespace to a pipe).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hms_dr.physical.pgbasebackup import run_pg_basebackup
from hms_dr.physical.staging import CopiedBackup, CopyJob, staged_files, store_staged_file
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, BASE_TAR, read_backup_label, verify_tar_backup

if TYPE_CHECKING:
    pass


def stage_base_backup(job: CopyJob) -> CopiedBackup:
    """Copy into staging, prove with pg_verifybackup, store."""
    pg = job.pg
    result = CopiedBackup()
    tar_dir = job.workdir / "tars"
    result.seconds["pg_basebackup"] = run_pg_basebackup(
        job.conn,
        pg,
        tar_dir,
        label=job.label,
        expected_bytes=job.expected_bytes,
        max_rate_kib_s=job.max_rate_kib_s,
        incremental_manifest=job.incremental_manifest,
    )
    files = staged_files(tar_dir)
    for staged in files:
        staged.path.chmod(0o600)
    result.staged_peak_bytes = sum(staged.path.stat().st_size for staged in files)
    result.verification = verify_tar_backup(pg, tar_dir, job.workdir)
    result.seconds["verify"] = result.verification.extract_seconds + result.verification.verify_seconds
    result.staged_peak_bytes += result.verification.extracted_bytes
    result.raw_manifest = (tar_dir / BACKUP_MANIFEST).read_bytes()
    result.backup_label = read_backup_label(tar_dir / BASE_TAR)

    started = time.monotonic()
    for staged in files:
        key = job.payload_key(staged.payload_name)
        result.payloads.append(
            store_staged_file(job.store, key, staged, compressor=job.compressor, encryption=job.encryption)
        )
        staged.path.unlink()  # frees staging as the upload goes
    result.seconds["upload"] = time.monotonic() - started
    return result
