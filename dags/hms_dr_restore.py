"""DR restore of tables or the whole database (runbook: "Scenario 1: Accidental Data Deletion" and
"Scenario 3: Corrupted Table or Index").

Restores the chosen tables (or, with `all_tables`, every table) from a daily backup set, or as they were at
a point in time — a scratch cluster recovered from a base backup and the archived WAL to a time,
an LSN or a restore point, so rows deleted at 14:00 come back with everything written since the
02:00 dump — into a new staging schema of production's database (or a new database on the
production server). The restored tables are checked (against the set's baselines; for a point in
time, against production's columns and keys), and, only when `swap_into_production` is on AND a
person the policy names (`dr.restore.approvers` / `approver_roles`), other than the one who
triggered the run, approves the swap in the UI (Required Actions; the approval shows every table,
its row count now and restored, and every statement), they replace production's tables in one
transaction (setting the swap task to success by hand swaps nothing). The replaced tables move,
with all their rows, into a quarantine schema named after the run: nothing is dropped. Foreign
keys, views, grants, owners and sequences follow the restored tables. Every run writes an audit
record (who, when, why, params, approvals, outcome) to the store and the task log.

Pages: the on-call DBA, when a step fails for good (a failed check, a swap that could not be
made, an approval that timed out, a store or database out of reach), or when the run is not done
within the policy's deadline (`alerts.deadlines.hms_dr_restore`, counted from when the run was
queued). A request the first task refuses (an unknown or malformed param, a set or table that
does not exist, a target that exists already) fails the run and is audited, but pages nobody.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.patterns import BACKUP_ID, IDENTIFIER, LSN, RESTORE_POINT, TABLE, whole
from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import dag_deadlines
from hms_dr.tasks.dagargs import task_defaults
from hms_dr.tasks.dr_restore import (
    check_production_after_swap,
    check_restored_tables,
    record_outcome,
    remove_scratch,
    restore_into_target,
    swap_into_production,
    swap_requested,
    validate_request,
)

policy = load_policy()
dr = policy.dr
WHAT, WHERE, SWAP, WHY = "What to restore", "Where to", "Checks and swap", "Why"

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "dr"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args=task_defaults(policy, dr, execution_timeout=timedelta(minutes=policy.rto_minutes)),
    params={
        "source": Param(
            "logical_backup",
            type="string",
            enum=["logical_backup", "point_in_time"],
            values_display={
                "logical_backup": "A daily logical backup set",
                "point_in_time": "A point in time (base backup + WAL)",
            },
            title="Restore from",
            description="A daily pg_dump set, or the tables as they were at a moment (minutes before the damage, not hours).",
            section=WHAT,
        ),
        "backup_id": Param(
            "latest",
            type="string",
            pattern=whole(BACKUP_ID),
            title="Backup set",
            description=(
                "`latest`, or a set id such as 20261124T020001Z: the daily set (logical backup), or the base backup "
                "set to recover from (point in time; `latest` picks the newest one before the target)."
            ),
            section=WHAT,
        ),
        "target_time": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Point in time",
            description="Point in time only: the moment to restore, with its zone, e.g. 2026-11-24T13:59:00Z (just before the damage).",
            section=WHAT,
        ),
        "target_lsn": Param(
            None,
            type=["null", "string"],
            pattern=whole(LSN),
            title="... or a WAL position",
            description="Point in time only, instead of a time: an LSN such as 0/3000060.",
            section=WHAT,
        ),
        "target_restore_point": Param(
            None,
            type=["null", "string"],
            pattern=whole(RESTORE_POINT),
            title="... or a restore point",
            description="Point in time only, instead of a time: a name given to pg_create_restore_point().",
            section=WHAT,
        ),
        "tables": Param(
            [],
            type="array",
            items={"type": "string", "pattern": whole(TABLE)},
            uniqueItems=True,
            maxItems=100,
            title="Tables",
            description='One per line, e.g. `appointments`, `schema.table` or, quoted as in SQL, `public."Order Details"`. Leave empty only with "Every table" on.',
            section=WHAT,
        ),
        "all_tables": Param(
            False,
            type="boolean",
            title="Every table (the whole database)",
            description="Restore every table of the set (or of production, for a point in time) instead of the tables named above.",
            section=WHAT,
        ),
        "target_kind": Param(
            "staging_schema",
            type="string",
            enum=["staging_schema", "new_database"],
            values_display={
                "staging_schema": "A new staging schema in production's database",
                "new_database": "A new database",
            },
            title="Restore into",
            description="A staging schema (needed for a swap), or a new database on the production server (never swapped).",
            section=WHERE,
        ),
        "staging_schema": Param(
            None,
            type=["null", "string"],
            pattern=whole(IDENTIFIER),
            **{
                "not": {
                    "anyOf": [
                        {"enum": ["public", "information_schema"]},
                        {"type": "string", "pattern": "^(pg_|dr_quarantine_)"},
                    ]
                }
            },
            title="Staging schema",
            description="A new schema name (a-z, 0-9, _). Empty: dr_staging_<run>. An existing schema is refused.",
            section=WHERE,
        ),
        "target_database": Param(
            None,
            type=["null", "string"],
            pattern=whole(IDENTIFIER),
            **{"not": {"enum": [policy.cluster.database, "postgres", "template0", "template1"]}},  # never production
            title="New database",
            description="New database only: its name (a-z, 0-9, _). Empty: dr_restore_<run>. Production, or a database holding data, is refused.",
            section=WHERE,
        ),
        "run_quality_checks": Param(
            True,
            type="boolean",
            title="Check the restored tables",
            description="Row counts, columns, keys and foreign keys against the set's baselines (a point in time: against production).",
            section=SWAP,
        ),
        "swap_into_production": Param(
            False,
            type="boolean",
            title="Swap into production (after approval)",
            description=(
                "After the checks, ask for approval, then replace production's tables with the restored ones in one "
                "transaction; the replaced tables are kept in schema dr_quarantine_<run>."
            ),
            section=SWAP,
        ),
        "reason": Param(
            type="string",
            minLength=10,
            maxLength=2000,
            pattern=r"\S",
            format="multiline",
            title="Reason",
            description="Why production data is restored (incident, ticket): kept in the audit record with your user name.",
            section=WHY,
        ),
    },
):
    plan = validate_request()
    restored = restore_into_target(policy)(plan)
    # A teardown: the scratch database or cluster goes whatever happened after it was made.
    restored >> remove_scratch(policy)(plan).as_teardown(setups=restored)
    checked = check_restored_tables(plan, restored)
    # The approval and the swap are one task: only the answer Airflow resumes it with can swap.
    swapped = swap_into_production(policy)
    checked >> swap_requested(plan) >> swapped
    after = check_production_after_swap()
    swapped >> after
    # A teardown with no setup: the audit record is written however the steps ended, and the
    # run's state stays theirs.
    after >> record_outcome().as_teardown()
