"""hms_dr_restore, runbook scenario 1, from the latest daily set (a directory-format one), through
Airflow on the sandbox.

A bad clean-up job deletes the cancelled appointments (and their void invoices) in production
after the nightly dump. The DR restore brings `appointments` back from the latest set into a
staging schema, checks it against the set's baselines, is approved in the swap's form by the
policy's approver (through an API server on the metadata DB of `airflow dags test`; who may
approve, and what is refused, is in test_dr_restore_approval.py) and swaps it into production:
the rows are back, the damaged table sits in the run's quarantine schema, and foreign keys,
views, grants, owner and the identity sequence follow the restored table. The swap task set to
success without an answer (`--mark-success-pattern`) swaps nothing, and a swap nobody but the
triggering user may approve is refused before the restore. Then every bad input the trigger form
cannot judge (the set, the tables, the target) is refused by the first task, each with its error
and no database changed; and every run leaves audit records that hold no secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hitl import APPROVER, run_dags_test_approving

from hms_dr.audit import read_audit_records
from hms_dr.catalog import find_set, key_for
from hms_dr.dr.request import run_key
from hms_dr.errors import HmsDrError, RequestRefused
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import load_policy

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
DAG_ID = "hms_dr_restore"
APP_ROLE = "hms_dr_test_app"
REASON = "bad clean-up job deleted the cancelled appointments after the nightly dump"


@dataclass
class Outcome:
    output: str
    run_id: str
    state: str | None
    task_states: dict[str, str]


def run_dr(dag_runner: Any, conf: dict[str, Any], *, approve: Any = None, mark_success: str | None = None) -> Outcome:
    """`airflow dags test hms_dr_restore --conf ...`; with ``approve`` (a hitl.HitlApiServer) the
    policy's approver approves the swap in its form; ``mark_success`` is dags test's
    --mark-success-pattern (tasks set to success without running)."""
    if approve is not None:
        approved = run_dags_test_approving(dag_runner, approve, DAG_ID, conf)
        return Outcome(approved.output, approved.run_id, approved.state, approved.task_states)
    before = dag_runner._latest_run_id(DAG_ID)
    argv = [str(Path(sys.executable).parent / "airflow"), "dags", "test", DAG_ID, "--conf", json.dumps(conf)]
    if mark_success:
        argv += ["--mark-success-pattern", mark_success]
    done = subprocess.run(argv, env=dag_runner.env, capture_output=True, text=True, timeout=900)
    run_id = dag_runner._latest_run_id(DAG_ID)
    assert run_id and run_id != before, done.stdout[-3000:] + done.stderr[-3000:]
    states, _tries, state = dag_runner._task_states(DAG_ID, run_id)
    return Outcome(done.stdout + done.stderr, run_id, state, states)


def approval_task_ids() -> list[str]:
    """The tasks of hms_dr_restore that ask a person for an approval (a human-in-the-loop form):
    what Mark Success would be used on to skip the approval."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.standard.operators.hitl import HITLOperator

    dagbag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / f"{DAG_ID}.py"))
    assert dagbag.import_errors == {}
    asking = [task.task_id for task in dagbag.dags[DAG_ID].tasks if isinstance(task, HITLOperator)]
    assert asking
    return asking


def sql(sandbox: Any, query: str, *args: Any, db: str | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(sandbox.superuser_dsn(db or sandbox.database), autocommit=True) as conn:
        cursor = conn.execute(query, args or None)
        return cursor.fetchall() if cursor.description else []


def database_state(sandbox: Any) -> dict[str, Any]:
    """What a refused request must leave as it was: the databases of both servers, the schemas
    of production's database, and the row count of every table in them."""
    tables = sql(sandbox, "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1")
    target = f"host=127.0.0.1 port={sandbox.restore_target_port} user=postgres dbname=postgres password={sandbox.secrets.role_passwords['restore_target_postgres']}"
    with psycopg.connect(target) as conn:
        target_databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()]
    return {
        "databases": [r[0] for r in sql(sandbox, "SELECT datname FROM pg_database ORDER BY 1")],
        "restore_target_databases": target_databases,
        "schemas": [r[0] for r in sql(sandbox, "SELECT nspname FROM pg_namespace ORDER BY 1")],
        "rows": {name: sql(sandbox, f"SELECT count(*) FROM {name}")[0][0] for (name,) in tables},
    }


def audit_of(store: Any, run_id: str) -> list[dict[str, Any]]:
    return [r for r in read_audit_records(store, CLUSTER) if r["run_id"] == run_id]


def assert_no_secret_in(records: list[dict[str, Any]], sandbox: Any) -> None:
    text = json.dumps(records)
    for secret in sandbox.secrets.values():
        assert secret not in text
    assert "PRIVATE KEY" not in text and "password=" not in text


@pytest.fixture(scope="module")
def backup_set(dag_runner: Any, primary_store: Any) -> Any:
    """A directory-format set (pg_dump -Fd, one payload per file): the DR restore rebuilds it and
    pg_restores the tables from it. test_dr_restore_approval.py restores from a custom-format set."""
    outcome = dag_runner.run(
        "hms_daily_logical_backup", policy={"logical_backup.format": "directory"}, name="dr-directory-set"
    )
    assert outcome.state == "success", outcome.output[-4000:]
    latest = find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")
    assert latest.manifest.body["archive_format"] == "directory"
    return latest


@pytest.fixture(scope="module")
def damaged(sandbox: Any, backup_set: Any) -> Iterator[dict[str, Any]]:
    """The application's grants on appointments, then the bad clean-up job; DR schemas this
    module leaves are removed at the end."""
    sql(sandbox, f"DROP ROLE IF EXISTS {APP_ROLE}")
    sql(sandbox, f"CREATE ROLE {APP_ROLE}")
    sql(sandbox, f"GRANT SELECT, INSERT ON appointments TO {APP_ROLE}")
    sql(sandbox, f"GRANT UPDATE (status, notes) ON appointments TO {APP_ROLE}")
    sql(sandbox, f"GRANT USAGE ON SEQUENCE appointments_id_seq TO {APP_ROLE}")
    schemas_before = {r[0] for r in sql(sandbox, "SELECT nspname FROM pg_namespace")}
    deleted = [r[0] for r in sql(sandbox, "SELECT id FROM appointments WHERE status = 'cancelled' ORDER BY id")]
    with psycopg.connect(sandbox.superuser_dsn(sandbox.database)) as conn:
        conn.execute(
            "DELETE FROM billing WHERE appointment_id IN (SELECT id FROM appointments WHERE status = 'cancelled')"
        )
        conn.execute("DELETE FROM appointments WHERE status = 'cancelled'")
    yield {
        "deleted_ids": deleted,
        "rows_after_damage": sql(sandbox, "SELECT count(*) FROM appointments")[0][0],
        "sequence_last_value": sql(sandbox, "SELECT last_value FROM appointments_id_seq")[0][0],
        "acl": acl_of(sandbox, "public.appointments"),
    }
    for (schema,) in sql(sandbox, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dr\\_%'"):
        if schema not in schemas_before:
            sql(sandbox, f'DROP SCHEMA "{schema}" CASCADE')
    sql(sandbox, f"DROP OWNED BY {APP_ROLE}")
    sql(sandbox, f"DROP ROLE {APP_ROLE}")


def acl_of(sandbox: Any, relation: str) -> list[tuple[Any, ...]]:
    """Grants on a table and its columns, without the grantor."""
    return sql(
        sandbox,
        """
        SELECT pg_get_userbyid(e.grantee), e.privilege_type, e.is_grantable, NULL::name
        FROM pg_class c, aclexplode(c.relacl) e WHERE c.oid = %s::regclass
        UNION ALL
        SELECT pg_get_userbyid(e.grantee), e.privilege_type, e.is_grantable, a.attname
        FROM pg_attribute a, aclexplode(a.attacl) e WHERE a.attrelid = %s::regclass AND a.attacl IS NOT NULL
        ORDER BY 1, 2, 4""",
        relation,
        relation,
    )


@pytest.mark.pg_majors(15, 18)
def test_deleted_appointments_come_back_from_the_latest_set_and_the_damaged_table_is_quarantined(
    dag_runner: Any,
    sandbox: Any,
    backup_set: Any,
    damaged: dict[str, Any],
    primary_store: Any,
    dags_test_approvals: Any,
) -> None:
    expected_rows = backup_set.manifest.baselines["tables"]["public.appointments"]["rows"]
    outcome = run_dr(
        dag_runner,
        {"tables": ["appointments"], "swap_into_production": True, "reason": REASON},
        approve=dags_test_approvals,
    )
    assert outcome.state == "success", outcome.output[-6000:]
    assert (
        outcome.task_states["swap_into_production"] == "success" and outcome.task_states["remove_scratch"] == "success"
    )
    quarantine = f"dr_quarantine_{run_key(outcome.run_id)}"

    # the staged table was proven value for value against the set's content digest before the swap
    checked = dag_runner.returned(DAG_ID, outcome.run_id, "check_restored_tables")["checks"]
    content = [c for c in checked["checks"] if c["check"] == "table_content"]
    assert [c["passed"] for c in content] == [True] and content[0]["target"].endswith(".appointments")
    assert not content[0]["target"].startswith("public.")  # checked in its staging schema, before the swap
    assert content[0]["observed"] == backup_set.manifest.baselines["tables"]["public.appointments"]["content"]

    # production has the rows back; the quarantine schema holds the damaged table, untouched
    assert sql(sandbox, "SELECT count(*) FROM public.appointments")[0][0] == expected_rows
    back = sql(sandbox, "SELECT count(*) FROM public.appointments WHERE id = ANY(%s)", damaged["deleted_ids"])[0][0]
    assert back == len(damaged["deleted_ids"]) > 0
    assert sql(sandbox, f'SELECT count(*) FROM "{quarantine}".appointments')[0][0] == damaged["rows_after_damage"]
    assert sql(sandbox, f"SELECT count(*) FROM \"{quarantine}\".appointments WHERE status = 'cancelled'")[0][0] == 0

    # foreign keys of other tables and the views follow the restored table, validated
    referencing = sql(
        sandbox,
        """SELECT conrelid::regclass::text, conname, convalidated FROM pg_constraint
                                   WHERE confrelid = 'public.appointments'::regclass ORDER BY 1""",
    )
    assert referencing == [
        ("billing", "billing_appointment_id_fkey", True),
        ("prescriptions", "prescriptions_appointment_id_fkey", True),
    ]
    assert (
        sql(sandbox, f"SELECT count(*) FROM pg_constraint WHERE confrelid = '\"{quarantine}\".appointments'::regclass")[
            0
        ][0]
        == 0
    )
    views = sql(
        sandbox,
        """SELECT DISTINCT r.ev_class::regclass::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                             WHERE d.refobjid = 'public.appointments'::regclass AND r.ev_class <> d.refobjid ORDER BY 1""",
    )
    assert views == [("v_department_census",), ("v_patient_summary",)]
    total = sql(sandbox, "SELECT sum(appointment_count) FROM v_patient_summary")[0][0]
    assert total == expected_rows

    # owner, grants (table, columns, sequence) and the identity sequence, as production had them
    assert (
        sql(sandbox, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.appointments'::regclass")[0][0]
        == "hms_admin"
    )
    assert acl_of(sandbox, "public.appointments") == damaged["acl"]
    assert (
        sql(sandbox, f"SELECT has_sequence_privilege('{APP_ROLE}', 'public.appointments_id_seq', 'USAGE')")[0][0]
        is True
    )
    with psycopg.connect(sandbox.superuser_dsn(sandbox.database)) as conn:
        conn.execute(f"SET ROLE {APP_ROLE}")
        new_id = conn.execute(
            "INSERT INTO appointments (patient_id, doctor_id, department_id, scheduled_at, reason) "
            "SELECT patient_id, doctor_id, department_id, scheduled_at, 'after the swap' FROM appointments LIMIT 1 RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.rollback()
    assert new_id > damaged["sequence_last_value"]  # no id production already handed out is given again

    # the audit trail: started, approved, succeeded; who, why, the params, the approval; no secret
    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["started", "approved", "succeeded"]
    final = records[-1]
    assert final["triggered_by"] == "dag_test" and final["reason"] == REASON
    assert final["params"]["tables"] == ["appointments"] and final["params"]["swap_into_production"] is True
    assert final["approvals"][0]["decision"] == "approved" and final["approvals"][0]["by"] == APPROVER
    assert (
        records[1]["approvals"][0]["by"] == APPROVER
        and records[1]["details"]["swap_digest"] == final["details"]["swap"]["digest"]
    )
    assert quarantine in final["outcome"] and final["details"]["swap"]["tables"][0]["rows_restored"] == expected_rows
    assert_no_secret_in(records, sandbox)


def test_the_swap_set_to_success_without_an_approval_swaps_nothing(
    dag_runner: Any, sandbox: Any, damaged: dict[str, Any], primary_store: Any
) -> None:
    before = database_state(sandbox)
    production_oid = sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0]
    outcome = run_dr(
        dag_runner,
        {"tables": ["appointments"], "swap_into_production": True, "reason": REASON},
        mark_success="|".join(approval_task_ids()),
    )
    assert outcome.state == "failed", outcome.output[-6000:]
    assert outcome.task_states["swap_into_production"] == "success"  # set so by dags test, never run
    assert outcome.task_states["check_production_after_swap"] == "failed"
    refusal = (
        "ApprovalRefused: swap_into_production was set to success without an approval answered in its form "
        "(Mark Success, or a PATCH of its state): nothing was swapped, production unchanged"
    )
    assert refusal in outcome.output

    after = database_state(sandbox)
    staging = sorted(set(after["schemas"]) - set(before["schemas"]))
    assert len(staging) == 1 and staging[0].startswith("dr_staging_")  # the restored copy, never swapped
    assert {k: v for k, v in after["rows"].items() if not k.startswith(staging[0])} == before["rows"]
    assert sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0] == production_oid

    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["started", "refused", "failed"]
    assert records[1]["outcome"] == refusal.removeprefix("ApprovalRefused: ") and records[1]["approvals"] == []
    assert records[2]["outcome"] == f"check_production_after_swap: {refusal}" and records[2]["approvals"] == []
    assert_no_secret_in(records, sandbox)
    sql(sandbox, f'DROP SCHEMA "{staging[0]}" CASCADE')


def test_a_request_the_form_accepts_but_the_set_does_not_fails_at_once_and_changes_nothing(
    dag_runner: Any, sandbox: Any, damaged: dict[str, Any], primary_store: Any
) -> None:
    before = database_state(sandbox)
    outcome = run_dr(dag_runner, {"tables": ["prescription"], "swap_into_production": True, "reason": REASON})
    assert outcome.state == "failed"
    assert outcome.task_states["validate_request"] == "failed"
    assert outcome.task_states["restore_into_target"] == "upstream_failed"
    assert "table 'prescription' is not in backup set" in outcome.output
    assert database_state(sandbox) == before
    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["failed"]
    assert "validate_request: RequestRefused: table 'prescription' is not in backup set" in records[0]["outcome"]
    assert_no_secret_in(records, sandbox)


def test_a_swap_nobody_but_the_user_who_triggered_may_approve_is_refused_before_the_restore(
    dag_runner: Any, sandbox: Any, damaged: dict[str, Any], primary_store: Any
) -> None:
    before = database_state(sandbox)
    outcome = dag_runner.run(
        DAG_ID,
        policy={"dr.restore.approvers": ["dag_test"]},
        name="dr-only-the-triggerer",
        conf={"tables": ["appointments"], "swap_into_production": True, "reason": REASON},
    )
    assert outcome.state == "failed"
    assert (
        outcome.task_states["validate_request"] == "failed"
        and outcome.task_states["restore_into_target"] == "upstream_failed"
    )
    refusal = (
        "ApprovalRefused: nobody may approve the swap besides dag_test, who triggered the run: "
        "dr.restore.approvers and dr.restore.approver_roles name no one else"
    )
    assert refusal in outcome.output
    assert database_state(sandbox) == before
    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["failed"] and records[0]["outcome"] == f"validate_request: {refusal}"


@pytest.fixture(scope="module")
def validate(sandbox: Any, primary_store: Any, restore_key: Any) -> Callable[..., dict[str, Any]]:
    """The first task's own check (hms_dr.dr.validate), with the sandbox's connections."""
    from hms_dr.dr.validate import validate_restore

    policy = load_policy(Path(sandbox.paths.policy_file))
    passwords = sandbox.secrets.role_passwords
    production = ConnectionInfo(
        "127.0.0.1", sandbox.pg_port, "hms_backup", sandbox.database, password=passwords["hms_backup"]
    )
    admin = ConnectionInfo("127.0.0.1", sandbox.pg_port, "postgres", sandbox.database, password=passwords["postgres"])
    target = ConnectionInfo(
        "127.0.0.1", sandbox.restore_target_port, "postgres", "postgres", password=passwords["restore_target_postgres"]
    )

    def run(**params: Any) -> dict[str, Any]:
        return validate_restore(
            {"reason": REASON, **params},
            run_id="manual__2026-11-24T14:05:00+00:00",
            cluster=policy.cluster,
            dr=policy.dr,
            staging=policy.staging,
            backup_schemas=policy.logical_backup.schemas,
            store=primary_store,
            production=production,
            admin=admin,
            admin_connection_id="hms_admin",
            restore_target=lambda: target,
            decryption_key=lambda: restore_key,
        ).to_xcom()

    return run


@pytest.fixture(scope="module")
def occupied(sandbox: Any, primary_store: Any, damaged: dict[str, Any]) -> Iterator[None]:
    """A database that holds data, a schema that exists, and a set folder without its manifest."""
    sql(sandbox, "CREATE DATABASE dr_test_occupied")
    sql(sandbox, "CREATE TABLE notes (id int)", db="dr_test_occupied")
    sql(sandbox, "CREATE SCHEMA dr_test_existing")
    primary_store.put_bytes(
        key_for(CLUSTER, BackupKind.LOGICAL, "20200102T020000Z", "dump.pgdump.zst.gpg"), b"interrupted"
    )
    yield
    primary_store.delete(key_for(CLUSTER, BackupKind.LOGICAL, "20200102T020000Z", "dump.pgdump.zst.gpg"))
    sql(sandbox, "DROP SCHEMA dr_test_existing")
    sql(sandbox, "DROP DATABASE dr_test_occupied")


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"tables": ["patients; DROP TABLE billing"]},
            RequestRefused,
            r"table 'patients; DROP TABLE billing' is not a table name as SQL writes it",
        ),
        (
            {"staging_schema": 'x"; DROP SCHEMA public CASCADE; --'},
            RequestRefused,
            r"staging_schema .* is not a plain identifier",
        ),
        (
            {"tables": ["\u0430ppointments"]},
            RequestRefused,
            r"table '\\u0430ppointments' is not a table name as SQL writes it",
        ),  # Cyrillic a
        (
            {"tables": ["appointments"], "backup_id": "20200101T020000Z"},
            RequestRefused,
            r"no complete logical backup set 20200101T020000Z in .*; the newest logical sets?: \d{8}T\d{6}Z",
        ),
        (
            {"tables": ["appointments"], "backup_id": "20200102T020000Z"},
            RequestRefused,
            r"no complete logical backup set 20200102T020000Z in .*; the newest logical sets?: \d{8}T\d{6}Z",
        ),
        (
            {"tables": ["prescription"]},
            RequestRefused,
            r"table 'prescription' is not in backup set \d{8}T\d{6}Z \(its tables: ",
        ),
        (
            {"all_tables": True, "target_kind": "new_database", "target_database": "hospital_management"},
            RequestRefused,
            r"is the production database: refused",
        ),
        (
            {"all_tables": True, "target_kind": "new_database", "target_database": "dr_test_occupied"},
            RequestRefused,
            r"target_database 'dr_test_occupied' already exists and holds 1 relation",
        ),
        (
            {"tables": ["appointments"], "staging_schema": "dr_test_existing"},
            RequestRefused,
            r"staging schema 'dr_test_existing' already exists",
        ),
        ({"tables": ["appointments"], "reason": ""}, RequestRefused, r"reason is required"),
        (
            {"all_tables": True, "target_kind": "new_database", "swap_into_production": True},
            RequestRefused,
            r"swap_into_production needs target_kind staging_schema",
        ),
        (
            {"tables": []},
            RequestRefused,
            r"^tables is empty: name the tables to restore \(e.g. appointments\), or set all_tables",
        ),
        (
            {"source": "point_in_time", "target_time": "2099-01-01T00:00:00Z", "tables": ["appointments"]},
            RequestRefused,
            r"^recovery target time 2099-01-01T00:00:00Z is in the future \(now \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)",
        ),
    ],
    ids=[
        "sql-in-table",
        "quote-in-schema",
        "look-alike-letter",
        "unknown-set",
        "incomplete-set",
        "table-not-in-set",
        "target-is-production",
        "target-holds-data",
        "staging-schema-exists",
        "no-reason",
        "swap-of-a-new-database",
        "no-table-named",
        "target-in-the-future",
    ],
)
def test_each_bad_input_is_refused_by_the_first_task_and_no_database_changes(
    validate: Callable[..., dict[str, Any]],
    sandbox: Any,
    occupied: None,
    params: dict[str, Any],
    error: type[HmsDrError],
    message: str,
) -> None:
    before = database_state(sandbox)
    with pytest.raises(error, match=message):
        validate(**params)
    assert database_state(sandbox) == before


def test_a_good_request_passes_the_same_checks(
    validate: Callable[..., dict[str, Any]], damaged: dict[str, Any]
) -> None:
    plan = validate(tables=["appointments"], swap_into_production=True)
    assert plan["tables"] == ["public.appointments"] and plan["scratch_database"].startswith("hms_dr_scratch_")
