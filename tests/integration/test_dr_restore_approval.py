"""hms_dr_restore through a real scheduler and API server: the trigger form refuses bad input
with HTTP 400 before a run exists, and a swap rejected through the human-in-the-loop API leaves
production untouched.

The approval's body, read back through the HITL API, shows exactly what the swap would change:
the table, its rows now and restored, the quarantine schema and every statement. The rejection
(by the API's user) skips the swap; the restored table stays in its staging schema for
inspection, and the audit trail records who rejected it and when.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from hms_dr.catalog import find_set
from hms_dr.errors import NoBackupForTarget
from hms_dr.manifest import BackupKind
from test_dr_restore_logical import REASON, assert_no_secret_in, audit_of, database_state, sql

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
DAG_ID = "hms_dr_restore"


class Api:
    """The REST API of a ScheduledAirflow, logged in as its generated admin user."""

    def __init__(self, airflow: Any) -> None:
        self.base = f"http://127.0.0.1:{airflow.port}"
        passwords = json.loads((Path(airflow.home) / "simple_auth_manager_passwords.json.generated").read_text())
        status, body = self.call("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]}, token=False)
        assert status == 201, body
        self.token = body["access_token"]

    def call(self, method: str, path: str, payload: Any = None, *, token: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def trigger(self, conf: dict[str, Any]) -> tuple[int, Any]:
        return self.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})


def task_state(airflow: Any, run_id: str, task_id: str) -> str | None:
    with sqlite3.connect(airflow.db_path) as db:
        row = db.execute("SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?", (DAG_ID, run_id, task_id)).fetchone()
    return row[0] if row else None


def run_state(airflow: Any, run_id: str) -> str | None:
    with sqlite3.connect(airflow.db_path) as db:
        row = db.execute("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)).fetchone()
    return row[0] if row else None


def wait_for(what: str, check: Any, airflow: Any, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s: " + airflow.log_tail("scheduler")
        time.sleep(1)


@pytest.fixture(scope="module")
def backup_set(dag_runner: Any, primary_store: Any) -> Any:
    """The newest daily set; one is taken when this sandbox has none yet."""
    try:
        return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")
    except NoBackupForTarget:
        outcome = dag_runner.run("hms_daily_logical_backup")
        assert outcome.state == "success", outcome.output[-4000:]
        return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")


@pytest.fixture()
def api(scheduled_airflow: Any) -> Iterator[tuple[Any, Api]]:
    airflow = scheduled_airflow("dr-approval")
    airflow.unpause_when_parsed(DAG_ID)
    yield airflow, Api(airflow)


BAD_INPUT = [
    ({"tables": ["patients; DROP TABLE billing"]}, "patients; DROP TABLE billing"),
    ({"tables": ["appointments"], "staging_schema": "x'; DROP SCHEMA public CASCADE; --"}, "DROP SCHEMA public"),
    ({"tables": ['appointments"']}, 'appointments\\"'),
    ({"tables": ["\u0430ppointments"]}, "ppointments"),  # a Cyrillic a
    ({"tables": ["appointments"], "target_database": "Hospital Management"}, "Hospital Management"),
    ({"tables": ["appointments"], "target_kind": "new_database", "target_database": "hospital_management"}, "hospital_management"),
    ({"tables": ["appointments"], "staging_schema": "public"}, "public"),
    ({"tables": ["appointments"], "backup_id": "20261124"}, "20261124"),
    ({"tables": ["appointments"], "source": "snapshot"}, "snapshot"),
    ({"tables": ["appointments"], "source": "point_in_time", "target_time": "yesterday 14:00"}, "yesterday 14:00"),
    ({"tables": ["appointments"], "source": "point_in_time", "target_lsn": "0/3000060; SELECT 1"}, "SELECT 1"),
    ({"tables": ["appointments"], "reason": None}, "reason"),
    ({"tables": ["appointments"], "reason": "oops"}, "oops"),
]


def test_the_trigger_form_refuses_bad_input_and_a_rejected_swap_leaves_production_untouched(
    api: tuple[Any, Api], backup_set: Any, sandbox: Any, primary_store: Any
) -> None:
    airflow, client = api
    before = database_state(sandbox)
    runs_before = airflow.run_states(DAG_ID)
    for bad, shown in BAD_INPUT:
        conf = {"reason": REASON, **bad}
        if conf["reason"] is None:
            del conf["reason"]
        status, body = client.trigger(conf)
        assert status == 400, (bad, status, body)
        assert shown in json.dumps(body["detail"], ensure_ascii=False).replace("\\\\", "\\"), (bad, body)
    assert airflow.run_states(DAG_ID) == runs_before  # no run was even created
    assert database_state(sandbox) == before

    production_oid = sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0]
    status, body = client.trigger({"tables": ["appointments"], "swap_into_production": True, "reason": REASON})
    assert status == 200, body
    run_id = body["dag_run_id"]
    wait_for("the approval request", lambda: task_state(airflow, run_id, "approve_swap") == "awaiting_input", airflow, 600)
    # Airflow 3.3.2 fails an approval answered before the scheduler has processed the executor's
    # event of the task parking itself (it then sees a "queued" task reported successful); a
    # person never answers that fast, a test must wait for it.
    parked = f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{DAG_ID}', task_id='approve_swap', run_id='{run_id}'"
    deadline = time.monotonic() + 30
    while parked not in airflow.log_tail("scheduler", 200_000) and time.monotonic() < deadline:
        time.sleep(0.5)

    status, detail = client.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_swap/-1/hitlDetails")
    assert status == 200, detail
    rows_now = sql(sandbox, "SELECT count(*) FROM appointments")[0][0]
    restored = backup_set.manifest.baselines["tables"]["public.appointments"]["rows"]
    assert detail["subject"] == "hms_dr_restore: swap appointments into production?"
    assert f"| `public.appointments` | {rows_now:,} | {restored:,} | {restored - rows_now:+,} |" in detail["body"]
    assert "dr_quarantine_" in detail["body"] and "ALTER TABLE" in detail["body"] and "triggered by **admin**" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"]

    status, answer = client.call("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_swap/-1/hitlDetails",
                                 {"chosen_options": ["Reject"], "params_input": {}})
    assert status == 200, answer
    wait_for("the run's end", lambda: run_state(airflow, run_id) in ("success", "failed"), airflow, 300)
    assert run_state(airflow, run_id) == "success"
    assert task_state(airflow, run_id, "record_outcome") == "success"
    assert task_state(airflow, run_id, "approve_swap") == "success"
    assert task_state(airflow, run_id, "swap_into_production") == "skipped"
    assert task_state(airflow, run_id, "check_production_after_swap") == "skipped"

    # production untouched: the same table, rows and schemas; the restored copy kept for inspection
    after = database_state(sandbox)
    staging = sorted(set(after["schemas"]) - set(before["schemas"]))
    assert len(staging) == 1 and staging[0].startswith("dr_staging_")
    assert {k: v for k, v in after["rows"].items() if not k.startswith(staging[0])} == before["rows"]
    assert after["rows"][f"{staging[0]}.appointments"] == restored
    assert sql(sandbox, "SELECT 'public.appointments'::regclass::oid")[0][0] == production_oid
    assert not [s for s in after["schemas"] if s.startswith("dr_quarantine_")]
    assert after["restore_target_databases"] == before["restore_target_databases"]  # the scratch database is gone

    records = audit_of(primary_store, run_id)
    assert [r["event"] for r in records] == ["started", "rejected"]
    rejected = records[-1]
    assert rejected["triggered_by"] == "admin" and rejected["reason"] == REASON
    assert rejected["approvals"][0]["by"] == "admin" and rejected["approvals"][0]["decision"] == "rejected"
    assert "production unchanged" in rejected["outcome"]
    assert_no_secret_in(records, sandbox)
    sql(sandbox, f'DROP SCHEMA "{staging[0]}" CASCADE')
