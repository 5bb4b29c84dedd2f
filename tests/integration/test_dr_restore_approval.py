"""hms_dr_restore through a real scheduler and API server: the trigger form refuses bad input
with HTTP 400 before a run exists, and only an approval answered in the swap's form by a person
the policy names, who did not trigger the run, swaps anything into production.

The approval's body, read back through the HITL API, shows exactly what the swap would change:
the table, its rows now and restored, the quarantine schema, every statement and who may
approve. A rejection skips the swap; the swap task set to success by hand (a PATCH of its state,
as Mark Success in the UI does) swaps nothing; the user who triggered the run cannot approve it,
neither through the API (not a respondent) nor where the API lets anyone answer (the simple auth
manager's all-admins mode: the swap task refuses it itself); the policy's second user approves
and the swap is made. Every refusal leaves production's tables, rows and oids as they were and
is in the audit trail.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hitl import APPROVER, SWAP_TASK, AirflowApi, answer, awaiting_tasks, hitl_path, run_state, task_path, task_state
from test_dr_restore_logical import REASON, assert_no_secret_in, audit_of, database_state, sql

from hms_dr.catalog import find_set
from hms_dr.dr.request import run_key
from hms_dr.manifest import BackupKind

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
DAG_ID = "hms_dr_restore"
SWAP_CONF = {"tables": ["appointments"], "swap_into_production": True, "reason": REASON}


def wait_for(what: str, check: Any, airflow: Any, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s: " + airflow.log_tail(
            "scheduler"
        )
        time.sleep(1)


def trigger(client: AirflowApi, conf: dict[str, Any], *, user: str | None = "admin") -> tuple[int, Any]:
    return client.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf}, user=user)


def trigger_until_the_approval_waits(
    airflow: Any, client: AirflowApi, *, user: str | None = "admin"
) -> tuple[str, str]:
    """Trigger a swap of appointments; return the run and the task that waits for the approval,
    once the scheduler has seen it park."""
    status, body = trigger(client, SWAP_CONF, user=user)
    assert status == 200, body
    run_id = body["dag_run_id"]
    waiting = wait_for(
        "the approval request",
        lambda: (
            awaiting_tasks(airflow.db_path, DAG_ID, run_id)
            or run_state(airflow.db_path, DAG_ID, run_id) in ("success", "failed")
        ),
        airflow,
        600,
    )
    assert isinstance(waiting, list) and len(waiting) == 1, (waiting, run_logs(airflow, run_id)[-6000:])
    # Airflow 3.3.2 fails an approval answered before the scheduler has processed the executor's
    # event of the task parking itself (it then sees a "queued" task reported successful); a
    # person never answers that fast, a test must wait for it.
    parked = (
        f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{DAG_ID}', "
        f"task_id='{waiting[0]}', run_id='{run_id}'"
    )
    wait_for(
        "the scheduler seeing the task park", lambda: parked in airflow.log_tail("scheduler", 200_000), airflow, 60
    )
    return run_id, waiting[0]


def wait_for_the_end(airflow: Any, run_id: str) -> str:
    return wait_for(
        "the run's end",
        lambda: (
            run_state(airflow.db_path, DAG_ID, run_id) in ("success", "failed")
            and run_state(airflow.db_path, DAG_ID, run_id)
        ),
        airflow,
        300,
    )


def run_logs(airflow: Any, run_id: str) -> str:
    """The task logs of one run (the Airflow home keeps earlier runs' logs too)."""
    return "\n".join(
        p.read_text(errors="replace")
        for p in sorted((airflow.home / "logs").rglob("*.log"))
        if f"run_id={run_id}" in str(p)
    )


def states(airflow: Any, run_id: str, *task_ids: str) -> list[str | None]:
    return [task_state(airflow.db_path, DAG_ID, run_id, task_id) for task_id in task_ids]


def add_marker(sandbox: Any) -> int:
    """A row production has and the backup set has not: after a swap it is only in the quarantine."""
    return int(
        sql(
            sandbox,
            "INSERT INTO appointments (patient_id, doctor_id, department_id, scheduled_at, reason) "
            "SELECT patient_id, doctor_id, department_id, scheduled_at, 'hms-dr approval test' "
            "FROM appointments ORDER BY id LIMIT 1 RETURNING id",
        )[0][0]
    )


def assert_production_unchanged(sandbox: Any, before: dict[str, Any], production_oid: int, run_id: str) -> str:
    """The same tables, rows and oid; the restored copy in a new staging schema, the only new
    schema (no quarantine). Returns the staging schema."""
    after = database_state(sandbox)
    staging = sorted(set(after["schemas"]) - set(before["schemas"]))
    assert staging == [f"dr_staging_{run_key(run_id)}"], staging
    assert {k: v for k, v in after["rows"].items() if not k.startswith(staging[0])} == before["rows"]
    assert sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0] == production_oid
    assert after["restore_target_databases"] == before["restore_target_databases"]  # the scratch database is gone
    return staging[0]


@pytest.fixture(scope="module")
def backup_set(dag_runner: Any, primary_store: Any) -> Any:
    """A daily set taken now, so a swap puts back exactly production as it is now (less the marker)."""
    outcome = dag_runner.run("hms_daily_logical_backup")
    assert outcome.state == "success", outcome.output[-4000:]
    return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")


@pytest.fixture()
def api(scheduled_airflow: Any) -> Iterator[tuple[Any, AirflowApi]]:
    users = {"admin": secrets.token_urlsafe(12), APPROVER: secrets.token_urlsafe(12)}
    airflow = scheduled_airflow("dr-approval", ui_users=users)
    airflow.unpause_when_parsed(DAG_ID)
    yield airflow, AirflowApi(airflow.port, users)


BAD_INPUT = [
    ({"tables": ["patients; DROP TABLE billing"]}, "patients; DROP TABLE billing"),
    ({"tables": ["appointments"], "staging_schema": "x'; DROP SCHEMA public CASCADE; --"}, "DROP SCHEMA public"),
    ({"tables": ['appointments"']}, 'appointments\\"'),
    ({"tables": ["\u0430ppointments"]}, "ppointments"),  # a Cyrillic a
    ({"tables": ["appointments"], "target_database": "Hospital Management"}, "Hospital Management"),
    (
        {"tables": ["appointments"], "target_kind": "new_database", "target_database": "hospital_management"},
        "hospital_management",
    ),
    ({"tables": ["appointments"], "staging_schema": "public"}, "public"),
    ({"tables": ["appointments"], "backup_id": "20261124"}, "20261124"),
    ({"tables": ["appointments"], "source": "snapshot"}, "snapshot"),
    ({"tables": ["appointments"], "source": "point_in_time", "target_time": "yesterday 14:00"}, "yesterday 14:00"),
    ({"tables": ["appointments"], "source": "point_in_time", "target_lsn": "0/3000060; SELECT 1"}, "SELECT 1"),
    ({"tables": ["appointments"], "reason": None}, "reason"),
    ({"tables": ["appointments"], "reason": "oops"}, "oops"),
]


def test_the_trigger_form_refuses_bad_input_and_a_rejected_swap_leaves_production_untouched(
    api: tuple[Any, AirflowApi], backup_set: Any, sandbox: Any, primary_store: Any
) -> None:
    airflow, client = api
    before = database_state(sandbox)
    runs_before = airflow.run_states(DAG_ID)
    for bad, shown in BAD_INPUT:
        conf = {"reason": REASON, **bad}
        if conf["reason"] is None:
            del conf["reason"]
        status, body = trigger(client, conf)
        assert status == 400, (bad, status, body)
        assert shown in json.dumps(body["detail"], ensure_ascii=False).replace("\\\\", "\\"), (bad, body)
    assert airflow.run_states(DAG_ID) == runs_before  # no run was even created
    assert database_state(sandbox) == before

    production_oid = sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0]
    run_id, waiting = trigger_until_the_approval_waits(airflow, client)
    assert waiting == SWAP_TASK

    status, detail = client.call("GET", hitl_path(DAG_ID, run_id), user=APPROVER)
    assert status == 200, detail
    rows_now = sql(sandbox, "SELECT count(*) FROM appointments")[0][0]
    restored = backup_set.manifest.baselines["tables"]["public.appointments"]["rows"]
    assert detail["subject"] == "hms_dr_restore: swap appointments into production?"
    assert f"| `public.appointments` | {rows_now:,} | {restored:,} | {restored - rows_now:+,} |" in detail["body"]
    assert (
        "dr_quarantine_" in detail["body"]
        and "ALTER TABLE" in detail["body"]
        and "triggered by **admin**" in detail["body"]
    )
    assert f"**Who may approve:** {APPROVER} (not admin, who triggered this run)" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["assigned_users"] == [{"id": APPROVER, "name": APPROVER}]

    status, answered = answer(client, DAG_ID, run_id, "Reject", user=APPROVER)
    assert status == 200, answered
    assert wait_for_the_end(airflow, run_id) == "success"
    assert states(airflow, run_id, "record_outcome", SWAP_TASK, "check_production_after_swap") == [
        "success",
        "skipped",
        "skipped",
    ]

    # production untouched: the same table, rows and schemas; the restored copy kept for inspection
    staging = assert_production_unchanged(sandbox, before, production_oid, run_id)
    assert database_state(sandbox)["rows"][f"{staging}.appointments"] == restored

    records = audit_of(primary_store, run_id)
    assert [r["event"] for r in records] == ["started", "rejected"]
    rejected = records[-1]
    assert rejected["triggered_by"] == "admin" and rejected["reason"] == REASON
    assert rejected["approvals"][0]["by"] == APPROVER and rejected["approvals"][0]["decision"] == "rejected"
    assert "production unchanged" in rejected["outcome"]
    assert_no_secret_in(records, sandbox)
    sql(sandbox, f'DROP SCHEMA "{staging}" CASCADE')


def test_the_approval_set_to_success_through_the_api_swaps_nothing(
    api: tuple[Any, AirflowApi], backup_set: Any, sandbox: Any, primary_store: Any
) -> None:
    airflow, client = api
    marker = add_marker(sandbox)
    before = database_state(sandbox)
    production_oid = sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0]
    run_id, waiting = trigger_until_the_approval_waits(airflow, client)

    # What Mark Success in the UI does: the task that waits for the approval is set to success.
    status, body = client.call("PATCH", task_path(DAG_ID, run_id, waiting), {"new_state": "success"})
    assert status == 200, body
    assert wait_for_the_end(airflow, run_id) == "failed"
    assert states(airflow, run_id, SWAP_TASK, "check_production_after_swap", "record_outcome") == [
        "success",
        "failed",
        "success",
    ]
    refusal = (
        f"{SWAP_TASK} was set to success without an approval answered in its form (Mark Success, or a PATCH of "
        "its state): nothing was swapped, production unchanged"
    )
    assert f"ApprovalRefused: {refusal}" in run_logs(airflow, run_id)

    staging = assert_production_unchanged(sandbox, before, production_oid, run_id)
    assert sql(sandbox, "SELECT count(*) FROM public.appointments WHERE id = %s", marker)[0][0] == 1

    records = audit_of(primary_store, run_id)
    assert [r["event"] for r in records] == ["started", "refused", "failed"]
    assert records[1]["outcome"] == refusal and records[1]["triggered_by"] == "admin" and records[1]["approvals"] == []
    assert records[2]["outcome"] == f"check_production_after_swap: ApprovalRefused: {refusal}"
    assert not any(r["approvals"] for r in records)  # nobody is recorded as having approved
    sql(sandbox, f'DROP SCHEMA "{staging}" CASCADE')
    sql(sandbox, "DELETE FROM appointments WHERE id = %s", marker)


def test_the_user_who_triggered_cannot_approve_and_the_policys_second_user_swaps(
    api: tuple[Any, AirflowApi], backup_set: Any, sandbox: Any, primary_store: Any
) -> None:
    airflow, client = api
    marker = add_marker(sandbox)
    rows_with_marker = sql(sandbox, "SELECT count(*) FROM appointments")[0][0]
    production_oid = sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0]
    run_id, waiting = trigger_until_the_approval_waits(airflow, client)
    digest = dict(airflow.task_returns(DAG_ID, "check_restored_tables"))[run_id]["swap_plan"]["digest"]

    # four eyes at the API: admin triggered the run, so the form does not take admin's answer
    status, body = answer(client, DAG_ID, run_id, "Approve", user="admin", digest=digest, task_id=waiting)
    assert status == 403 and "User=admin (id=admin) is not a respondent for the task" in json.dumps(body), body
    assert waiting == SWAP_TASK and task_state(airflow.db_path, DAG_ID, run_id, SWAP_TASK) == "awaiting_input"
    status, detail = client.call("GET", hitl_path(DAG_ID, run_id), user=APPROVER)
    assert status == 200 and detail["params"]["plan_digest"]["value"] == digest, detail

    status, answered = answer(client, DAG_ID, run_id, "Approve", user=APPROVER, digest=digest)
    assert status == 200 and answered["responded_by"] == {"id": APPROVER, "name": APPROVER}, answered
    assert wait_for_the_end(airflow, run_id) == "success", run_logs(airflow, run_id)[-6000:]
    assert states(airflow, run_id, SWAP_TASK, "check_production_after_swap") == ["success", "success"]

    # the set's rows replace production's; production's table, marker and all, is in the quarantine
    quarantine = f"dr_quarantine_{run_key(run_id)}"
    assert (
        sql(sandbox, "SELECT count(*) FROM public.appointments")[0][0]
        == backup_set.manifest.baselines["tables"]["public.appointments"]["rows"]
    )
    assert sql(sandbox, "SELECT count(*) FROM public.appointments WHERE id = %s", marker)[0][0] == 0
    assert sql(sandbox, f'SELECT count(*) FROM "{quarantine}".appointments')[0][0] == rows_with_marker
    assert sql(sandbox, f'SELECT count(*) FROM "{quarantine}".appointments WHERE id = %s', marker)[0][0] == 1
    assert sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0] != production_oid

    records = audit_of(primary_store, run_id)
    assert [r["event"] for r in records] == ["started", "approved", "succeeded"]
    approved, final = records[1], records[2]
    assert approved["triggered_by"] == "admin" and approved["details"]["swap_digest"] == digest
    assert [(a["by"], a["decision"]) for a in approved["approvals"]] == [(APPROVER, "approved")]
    assert [(a["by"], a["decision"]) for a in final["approvals"]] == [(APPROVER, "approved")]
    assert final["details"]["swap"]["digest"] == digest and quarantine in final["outcome"]
    assert_no_secret_in(records, sandbox)
    sql(sandbox, f'DROP SCHEMA "{quarantine}" CASCADE')


def test_where_the_api_lets_anyone_answer_the_swap_still_refuses_the_user_who_triggered(
    scheduled_airflow: Any, backup_set: Any, sandbox: Any, primary_store: Any
) -> None:
    # The simple auth manager's all-admins mode: everyone is the admin "Anonymous", and the API
    # takes anyone's answer whatever the form's assigned users. The policy names Anonymous as an
    # approver too, so only four eyes can refuse it.
    airflow = scheduled_airflow(
        "dr-approval-all-admins",
        policy={"dr.restore.approvers": ["Anonymous", APPROVER]},
        env={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"},
    )
    airflow.unpause_when_parsed(DAG_ID)
    client = AirflowApi(airflow.port)
    marker = add_marker(sandbox)
    before = database_state(sandbox)
    production_oid = sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0]
    run_id, waiting = trigger_until_the_approval_waits(airflow, client, user=None)

    status, answered = answer(client, DAG_ID, run_id, "Approve", user=None, task_id=waiting)
    assert status == 200 and answered["responded_by"]["name"] == "Anonymous", answered
    assert wait_for_the_end(airflow, run_id) == "failed"
    assert states(airflow, run_id, SWAP_TASK, "check_production_after_swap") == ["failed", "upstream_failed"]
    refusal = (
        "swap refused, production unchanged: Anonymous triggered this run and may not approve its swap "
        "(four eyes: dr.restore.allow_self_approval is off)"
    )
    assert f"ApprovalRefused: {refusal}" in run_logs(airflow, run_id)

    staging = assert_production_unchanged(sandbox, before, production_oid, run_id)
    assert sql(sandbox, "SELECT count(*) FROM public.appointments WHERE id = %s", marker)[0][0] == 1

    records = audit_of(primary_store, run_id)
    assert [r["event"] for r in records] == ["started", "refused", "failed"]
    refused = records[1]
    assert refused["triggered_by"] == "Anonymous" and refused["outcome"] == refusal
    assert [(a["by"], a["decision"]) for a in refused["approvals"]] == [("Anonymous", "refused")]
    assert records[2]["outcome"] == f"{SWAP_TASK}: ApprovalRefused: {refusal}"
    sql(sandbox, f'DROP SCHEMA "{staging}" CASCADE')
    sql(sandbox, "DELETE FROM appointments WHERE id = %s", marker)
