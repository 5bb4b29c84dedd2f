"""Weekly integrity check of the HMS database (runbook: "Scenario 3: Corrupted Table or Index",
step 1: validate the extent of corruption with pg_amcheck).

Protects: against corruption nobody has noticed yet, while the backups that can repair it are
still retained. `pg_amcheck` checks every table's heap (`verify_heapam`) and every B-tree index
(`bt_index_check --heapallindexed`: every row must be in its indexes) of production, as the
backup role in a read-only session with a lock timeout: ACCESS SHARE locks only, never
`--parent-check` and never installing anything (the amcheck extension is a one-time setup, see
`include/sql/integrity/install_amcheck.sql`). The report (JSON, text and pg_amcheck's output) goes
to `<cluster>/integrity/<id>/` in the primary store and to the log. Also runs from the trigger
form, e.g. for the tables a repair just replaced.

Pages: the on-call DBA when corruption is found, with the corrupt relations and the ready-to-use
`hms_dr_restore` conf that restores their tables from the newest daily backup (or when the check
could not run or could not check everything). A trigger whose params the first task refuses
(an unknown or malformed one) fails the run without paging.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.patterns import TABLE, whole
from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import alert_on_failure, dag_deadlines
from hms_dr.tasks.integrity import check_amcheck_installed, judge_integrity, run_pg_amcheck

policy = load_policy()
settings = policy.dr.integrity

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=policy.schedules["integrity_check"],
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "dr", "integrity"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args={
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": timedelta(minutes=settings.execution_timeout_min),
        **alert_on_failure(policy),
    },
    params={
        "tables": Param(
            [],
            type="array",
            items={"type": "string", "pattern": whole(TABLE)},
            title="Tables",
            description='Empty: the whole database. Or tables as SQL writes them, such as appointments, public.billing or public."Order Details" (their indexes and TOAST too).',
        ),
        "heapallindexed": Param(
            settings.heapallindexed,
            type="boolean",
            title="Check that every row is in its indexes",
            description="bt_index_check with heapallindexed: reads each table once more; finds index entries that are missing.",
        ),
    },
):
    report = run_pg_amcheck(check_amcheck_installed())
    judge_integrity(report)
