"""Monthly restore test (runbook: "Monthly restore test performed on an isolated environment").

Proves the newest daily backup (or the set an operator names) restores exactly: the payload is
downloaded and its sha256 proven against the manifest before it is decrypted with the restore
key, restored with `pg_restore -j` into a fresh scratch database on the isolated restore server
(`hms_restore_target`, never production), and checked with Great Expectations against the
baselines recorded at backup time: every table's columns and exact row count, keys, foreign
keys, the policy views' fingerprints, and the runbook's smoke queries. RTO is measured and
compared with the policy's target. The report (summary.json, report.html, Data Docs) is stored
in the store and announced as `hms://restore-tests`. The scratch database is always dropped.

The physical drill (param `mode`: physical or both) recovers the newest base backup that reaches
the daily set's snapshot LSN into a throw-away cluster (WAL fetched, verified and decrypted from
the store), runs the same checks against the same baselines, stops it and runs
`pg_checksums --check` (the runbook's offline corruption check), then removes it.

The upgrade rehearsal (param `upgrade_rehearsal`, mode logical) restores the set into a server of a
newer PostgreSQL major instead (`restore_test.upgrade_rehearsal_connection_id`) and runs the same
checks against the same baselines; the report names both versions ("upgrade rehearsal:
PostgreSQL 15.18 → 18.6"). It is refused before anything is downloaded when the policy names no such
server, its Connection is missing, or its major is not newer than the set's.

Pages: the on-call DBA, when a restore differs from its baselines or takes longer than the RTO.
A trigger the first task refuses (an unknown or malformed param, a set id the store lacks) fails
the run without paging.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.patterns import BACKUP_ID, whole
from hms_dr.policy import RestoreTestMode, load_policy
from hms_dr.tasks.alerting import alert_on_failure, dag_deadlines
from hms_dr.tasks.assets import restore_test_schedule
from hms_dr.tasks.physical_drill import (
    check_recovered_cluster,
    recover_for_drill,
    remove_recovered_cluster,
    verify_checksums_offline,
)
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
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": timedelta(minutes=policy.rto_minutes),
        **alert_on_failure(policy),
    },
    params={
        "backup_id": Param(
            "latest",
            type="string",
            pattern=whole(BACKUP_ID),
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
        "mode": Param(
            policy.restore_test.mode.value,
            type="string",
            enum=[mode.value for mode in RestoreTestMode],
            title="What to restore",
            description=(
                "`logical`: pg_restore the daily set into a scratch database. `physical`: point-in-time recovery of "
                "the newest base backup to that set's snapshot LSN into a throw-away cluster, then `pg_checksums`. "
                "`both`: the two, each checked against the set's baselines, so the backups verify each other."
            ),
        ),
        "upgrade_rehearsal": Param(
            False,
            type="boolean",
            title="Upgrade rehearsal",
            description=(
                "Restore the daily set into the policy's upgrade-rehearsal server "
                "(`restore_test.upgrade_rehearsal_connection_id`: isolated, a NEWER PostgreSQL major than the "
                "server the set was taken from) instead of the restore server, and hold it to the same exact "
                "baselines: every table's rows and content digest, keys, the views' fingerprints, the smoke "
                "queries. Passing proves the backup restores into the new major with the data unchanged, before "
                "you upgrade. Needs mode `logical` (a base backup cannot cross majors); the report names both "
                "versions."
            ),
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
    # Teardowns: they run however the restores and the checks ended, and the run's outcome is
    # theirs, not the teardowns'. Choosing the set (and the scratch names) is their setup.
    check_against_baselines(plan, restored) >> drop_scratch_database(plan).as_teardown(setups=plan)
    recovered = recover_for_drill(plan)
    checked = check_recovered_cluster(plan, recovered)
    checked >> verify_checksums_offline(plan, recovered) >> remove_recovered_cluster(plan).as_teardown(setups=plan)
