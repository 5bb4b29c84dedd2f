"""Continuous WAL archiving of the HMS cluster (runbook: "WAL archiving for point-in-time recovery").

Protects: every WAL segment, `.history` and `.backup` file that PostgreSQL's archive_command
spooled on the database host. Every 5 minutes each new file is compressed, gpg-encrypted and
stored as its own set (`<cluster>/wal/<file>/`), read back and checked by sha256; the manifest
is written last and only then is the file removed from the spool. The run also checks
`pg_stat_archiver` and measures the RPO (now minus the newest WAL safely in the store) against
the policy's target. WAL sets older than the policy's window (7 days) expire, except what a
retained base backup needs (see `hms_dr.retention.wal`); with no base backup stored, none expires.

Pages: the on-call DBA, when a run fails: a WAL file conflicting with the store, archiving
failing, or the RPO over target.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import dag_deadlines
from hms_dr.tasks.dagargs import task_defaults
from hms_dr.tasks.wal_archive import check_archiver, expire_wal, measure_rpo, ship_spool

policy = load_policy()
wal = policy.wal

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=policy.schedules["wal_archive"],
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "backup", "wal"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    # the spool is on the database host: a worker there serves this queue
    default_args=task_defaults(policy, wal, queue=wal.spool_queue),
):
    shipped = ship_spool()
    shipped >> measure_rpo()
    shipped >> expire_wal()
    check_archiver()
