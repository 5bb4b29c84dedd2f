"""Task callables of hms_wal_archive: ship the spool, check the archiver, measure the RPO."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr.errors import RecoveryPointAtRisk
from hms_dr.manifest import BackupKind
from hms_dr.policy import CompressionMethod, load_policy
from hms_dr.tasks.assets import WAL_ARCHIVE
from hms_dr.tasks.connections import database_connection, encryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.retention import expire_primary
from hms_dr.wal import rpo
from hms_dr.wal.newest import newest_stored_wal
from hms_dr.wal.ship import ship_spool as ship_spool_files
from hms_dr.wal.spool import newest_spool_file, read_spool

log = logging.getLogger(__name__)

DEFAULT_ZSTD_LEVEL = 3


@task
@engine_errors_decide_retry
def ship_spool() -> dict[str, Any]:
    """Ship every spool file not yet in the store (oldest first); remove each once its manifest is stored."""
    policy = load_policy()
    wal = policy.wal
    level = policy.compression.level if policy.compression.method is CompressionMethod.ZSTD else DEFAULT_ZSTD_LEVEL
    return ship_spool_files(
        open_policy_store(policy),
        policy.cluster.name,
        wal.spool_dir,
        encryption_key=encryption_key(policy),
        zstd_level=max(level, 1),
        staging_dir=policy.staging.dir,
        remove_from_spool=wal.remove_shipped_from_spool,
    ).to_xcom()


@task
@engine_errors_decide_retry
def check_archiver() -> dict[str, Any]:
    """Read pg_stat_archiver as the backup role; fail with one line when archiving is failing now."""
    policy = load_policy()
    status = rpo.read_archiver_status(database_connection(policy.cluster.connection_id, policy.cluster.database))
    log.info(
        "pg_stat_archiver: %d archived (last %s at %s), %d failed (last %s at %s)",
        status.archived_count,
        status.last_archived_wal,
        status.last_archived_at,
        status.failed_count,
        status.last_failed_wal,
        status.last_failed_at,
    )
    problem = rpo.judge_archiver(status)
    if problem:
        raise RecoveryPointAtRisk(
            problem, hint="read the PostgreSQL log for archive_command's error (spool full or unwritable?)"
        )
    return status.to_xcom()


@task(outlets=[WAL_ARCHIVE])
@engine_errors_decide_retry
def measure_rpo() -> dict[str, Any]:
    """RPO now for the store and the spool; fail with one line when over the policy's target."""
    policy = load_policy()
    spool = newest_spool_file(read_spool(policy.wal.spool_dir).files)
    report = rpo.measure_rpo(
        newest_stored_wal(open_policy_store(policy), policy.cluster.name),
        None if spool is None else (spool.name, spool.modified_at),
        target_minutes=policy.rpo_minutes,
        now=datetime.now(UTC),
    )
    log.info(
        "RPO now: store %s s (newest %s), spool %s s (newest %s), target %d min",
        report.store_age_s,
        report.newest_stored_wal,
        report.spool_age_s,
        report.newest_archived_wal,
        report.target_minutes,
    )
    if report.problem:
        raise RecoveryPointAtRisk(report.problem)
    get_current_context()["outlet_events"][WAL_ARCHIVE].extra = report.to_xcom()
    return report.to_xcom()


@task
@engine_errors_decide_retry
def expire_wal() -> dict[str, Any]:
    """Delete WAL sets older than the policy's window that no retained base backup needs."""
    return expire_primary(load_policy(), (BackupKind.WAL,))[BackupKind.WAL.value].to_xcom()
