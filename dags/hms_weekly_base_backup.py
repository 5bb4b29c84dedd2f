"""Weekly physical base backup of the HMS cluster (runbook: "pg_basebackup: physical backup with
WAL shipping").

Protects: the whole cluster, as `pg_basebackup` tars (WAL included, with PostgreSQL's backup
manifest) taken as the replication role. By default (`base_backup.method: streamed`) the tar stream
flows through a check of every file against the backup manifest (size, SHA-256, none missing or
extra, the WAL parsed by pg_waldump) and zstd | gpg into the primary store, staging only the
backup's WAL; a stream that fails the check never completes its upload. (`staged`: tars on disk,
`pg_verifybackup`, then upload.) Each payload is read back by sha256, and the set's manifest
(start/stop LSN, timeline, times) is written last. Together with the WAL that hms_wal_archive ships, a base backup is the
starting point of every point-in-time recovery. The newest sets (policy: 4) are kept; WAL expiry
never removes WAL they need.

With `base_backup.incremental: true` (PostgreSQL 17+, summarize_wal on) it runs on
`schedules.incremental_base_backup` (daily) instead, and each run takes an incremental backup
against the newest set (only the blocks changed since), or a full one when
`base_backup.full_every_days` have passed since the chain's full or the chain cannot be extended
(the reasons are in the task log, one a line). The `backup_type` param forces either type.

Pages: the on-call DBA, when a run fails for good after its retries (a refused forced
incremental does not page: nothing was copied, and the log says why).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.physical.incremental import BackupTypeRequest
from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import dag_deadlines
from hms_dr.tasks.base_backup import back_up_cluster, expire_old_base_backups
from hms_dr.tasks.dagargs import task_defaults

policy = load_policy()
settings = policy.base_backup

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=policy.schedules["incremental_base_backup" if settings.incremental else "weekly_base_backup"],
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "backup", "physical"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args=task_defaults(policy, settings),
    params={
        "backup_type": Param(
            BackupTypeRequest.AUTO.value,
            type="string",
            enum=[r.value for r in BackupTypeRequest],
            title="Backup type",
            description=(
                "auto: what the policy says (incremental against the newest set when base_backup.incremental is on "
                "and no full is due, else full); full: a full base backup now (starts a new chain); incremental: "
                "an incremental against the newest set now, refused when it has no usable parent (PostgreSQL 17+)."
            ),
        ),
    },
):
    back_up_cluster() >> expire_old_base_backups()
