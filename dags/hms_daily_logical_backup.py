"""Daily logical backup of the HMS database (runbook: "Full Logical Backup with pg_dump").

Protects: every table of the database, as a `pg_dump -Fc` archive (a directory-format
`pg_dump -Fd -j` dump, one payload per file, for a database at or above the policy's
logical_backup.directory_from_bytes) plus the runbook's schema-only and data-only exports, all taken in ONE snapshot together with the baselines
(row counts, view fingerprints) that the restore test later proves the restore against.
Every payload is compressed, gpg-encrypted and streamed into the primary store, read back
and checked by sha256; the manifest is written last. Daily sets older than the policy's
retention are expired, never the newest.

Pages: the on-call DBA, when a run fails for good after its retries.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import dag_deadlines
from hms_dr.tasks.dagargs import task_defaults
from hms_dr.tasks.logical_backup import (
    check_preconditions,
    dump_in_one_snapshot,
    expire_old_sets,
    publish_manifests,
    read_back_payloads,
)

policy = load_policy()
backup = policy.logical_backup

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=policy.schedules["daily_logical_backup"],
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "backup", "logical"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args=task_defaults(policy, backup),
):
    backup_run = dump_in_one_snapshot()
    readback = read_back_payloads(backup_run)
    check_preconditions() >> backup_run
    publish_manifests(backup_run, readback) >> expire_old_sets()
