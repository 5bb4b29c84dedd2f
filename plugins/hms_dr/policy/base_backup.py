"""The policy's optional ``base_backup:`` section: where hms_weekly_base_backup stages
pg_basebackup's tars, how they are compressed, whether it takes incremental backups (PostgreSQL
17+), and the job's retries and time limit. How many sets are kept is retention.base_backups_keep.

Incrementals are off by default: a server older than 17 cannot take them, and an existing
deployment must keep working unchanged after an upgrade of hms-dr."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hms_dr.policy.reader import PolicyReader

BASE_BACKUP_STAGING_SUBDIR = "base-backup"
DEFAULT_STAGING_LIMIT_MB = 256


class BaseBackupMethod(StrEnum):
    """How pg_basebackup's output reaches the store (physical.streamcopy / physical.stagedcopy)."""

    STREAMED = "streamed"  # one tar stream, proven on its way: staging holds the backup's WAL only
    STAGED = "staged"  # tars on disk, pg_verifybackup, then upload: ~2.2 x the cluster in staging


@dataclass(frozen=True)
class BaseBackupPolicy:
    """hms_weekly_base_backup: where pg_basebackup stages its tars and how they are compressed."""

    staging_dir: Path  # the WAL and manifest of a streamed backup; a staged one's tars and extracted copy
    # Streamed: the bound on what is staged besides the backup's WAL (the manifest, small); the
    # free space needed is this plus the server's max_wal_size.
    method: BaseBackupMethod = BaseBackupMethod.STREAMED
    staging_limit_mb: int = DEFAULT_STAGING_LIMIT_MB
    staging_space_ratio: float = 2.2  # staged: free space needed, as a multiple of the cluster's size
    zstd_level: int = 1
    zstd_threads: int = 0  # 0 = one per core
    # A weekly job: retry twice with a long back-off (a busy or restarting primary), and never
    # let one run overlap the next Sunday's.
    retries: int = 2
    retry_delay_s: int = 600
    max_retry_delay_s: int = 3600
    execution_timeout_min: int = 360
    # PostgreSQL 17+: when on, the DAG runs daily (schedules.incremental_base_backup) and takes an
    # incremental against the newest set unless a full one is due (hms_dr.physical.incremental).
    incremental: bool = False
    full_every_days: int = 7  # a new full backup (a new chain) once the chain's full is this old


def parse_base_backup(reader: PolicyReader, staging_dir: Path) -> BaseBackupPolicy:
    """The optional ``base_backup:`` section; a missing key takes BaseBackupPolicy's default and
    a missing staging_dir is ``<staging.dir>/base-backup``."""
    defaults = BaseBackupPolicy(staging_dir=staging_dir / BASE_BACKUP_STAGING_SUBDIR)
    section = reader.optional_mapping("base_backup")

    def present(name: str) -> bool:
        return section.get(name) is not None

    return BaseBackupPolicy(
        staging_dir=Path(reader.absolute_path("base_backup.staging_dir"))
        if present("staging_dir")
        else defaults.staging_dir,
        method=(reader.choice("base_backup.method", BaseBackupMethod) if present("method") else defaults.method),
        staging_limit_mb=(
            reader.integer("base_backup.staging_limit_mb", minimum=1, maximum=1 << 20)
            if present("staging_limit_mb")
            else defaults.staging_limit_mb
        ),
        staging_space_ratio=(
            reader.number("base_backup.staging_space_ratio", minimum=2.0)
            if present("staging_space_ratio")
            else defaults.staging_space_ratio
        ),
        zstd_level=reader.integer("base_backup.zstd_level", minimum=1, maximum=19)
        if present("zstd_level")
        else defaults.zstd_level,
        zstd_threads=(
            reader.integer("base_backup.zstd_threads", minimum=0, maximum=64)
            if present("zstd_threads")
            else defaults.zstd_threads
        ),
        retries=reader.integer("base_backup.retries", minimum=0, maximum=20)
        if present("retries")
        else defaults.retries,
        retry_delay_s=reader.integer("base_backup.retry_delay_s", minimum=0)
        if present("retry_delay_s")
        else defaults.retry_delay_s,
        max_retry_delay_s=(
            reader.integer("base_backup.max_retry_delay_s", minimum=0)
            if present("max_retry_delay_s")
            else defaults.max_retry_delay_s
        ),
        execution_timeout_min=(
            reader.integer("base_backup.execution_timeout_min", minimum=1)
            if present("execution_timeout_min")
            else defaults.execution_timeout_min
        ),
        incremental=reader.boolean("base_backup.incremental") if present("incremental") else defaults.incremental,
        # At most 30: WAL summaries are kept for wal_summary_keep_time (10 days by default), and a
        # chain longer than a month makes every restore combine that many sets.
        full_every_days=(
            reader.integer("base_backup.full_every_days", minimum=1, maximum=30)
            if present("full_every_days")
            else defaults.full_every_days
        ),
    )
