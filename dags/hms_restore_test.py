"""Monthly restore test (runbook: "Monthly restore test performed on an isolated environment").

Proves the newest daily backup (or the set an operator names) restores exactly: the payload is
downloaded and its sha256 proven against the manifest before it is decrypted with the restore
key, restored with `pg_restore -j` into a fresh scratch database on the isolated restore server
(`hms_restore_target`, never production), and checked with Great Expectations against the
baselines recorded at backup time: every table's columns and exact row count, keys, foreign
keys, the policy views' fingerprints, and the runbook's smoke queries. RTO is measured and
compared with the policy's target. The report (summary.json, report.html, Data Docs) is stored
in the store and announced as `hms://restore-tests`. The scratch database is always dropped.

Pages: the on-call DBA, when a restore differs from its baselines or takes longer than the RTO.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.policy import load_policy
from hms_dr.tasks.assets import restore_test_schedule
from hms_dr.tasks.restore_test import (
    check_against_baselines,
    choose_backup_set,
    drop_scratch_database,
    restore_into_scratch,
)

policy = load_policy()

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=restore_test_schedule(policy.schedules["restore_test"], policy.restore_test.on_every_backup),
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "restore-test"],
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": timedelta(minutes=policy.rto_minutes),
    },
    params={
        "backup_id": Param(
            "latest",
            type="string",
            pattern=r"^(latest|[0-9]{8}T[0-9]{6}Z)$",
            title="Backup set",
            description=(
                "`latest` for the newest complete daily set (or, when a new daily set triggered the run, "
                "that set), or a set id such as 20261124T020001Z."
            ),
        ),
        "keep_scratch": Param(
            False,
            type="boolean",
            title="Keep the scratch database",
            description="Leave the restored scratch database on the restore server for inspection (default: drop it).",
        ),
        "restore_jobs": Param(
            policy.restore_test.restore_jobs,
            type="integer",
            minimum=1,
            maximum=16,
            title="pg_restore jobs",
            description="Parallel jobs for `pg_restore -j` on the restore server.",
        ),
    },
):
    plan = choose_backup_set()
    restored = restore_into_scratch(plan)
    # A teardown: it runs however the restore and the checks ended, and the run's outcome is
    # theirs, not the teardown's. Choosing the set (and the scratch name) is its setup.
    check_against_baselines(plan, restored) >> drop_scratch_database(plan).as_teardown(setups=plan)
