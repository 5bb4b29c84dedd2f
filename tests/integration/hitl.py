"""Answering hms_dr_restore's swap approval the way a person does: through Airflow's REST API,
logged in as a user of the simple auth manager.

``AirflowApi`` talks to an API server (a ScheduledAirflow's, or ``HitlApiServer``'s); ``HitlApiServer``
is an API server alone on the metadata DB of the `airflow dags test` runs, which leave a
human-in-the-loop task waiting until a response is recorded from outside (dag.test() resolves
none itself). ``run_dags_test_approving`` runs a DAG that way and approves its swap as a user.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
SWAP_TASK = "swap_into_production"
APPROVER = "approver"  # the sandbox policy's approver (hms_sandbox.policy_file.SANDBOX_APPROVER)


class AirflowApi:
    """The REST API of an Airflow API server, as any of its users (passwords by user)."""

    def __init__(self, port: int, passwords: Mapping[str, str] | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.passwords = dict(passwords or {})
        self.tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        if user not in self.tokens:
            status, body = self.call(
                "POST", "/auth/token", {"username": user, "password": self.passwords[user]}, user=None
            )
            assert status == 201, body
            self.tokens[user] = body["access_token"]
        return self.tokens[user]

    def call(self, method: str, path: str, payload: Any = None, *, user: str | None = "admin") -> tuple[int, Any]:
        """user None: no token (the login itself, or an all-admins Airflow that needs none)."""
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def task_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"


def hitl_path(dag_id: str, run_id: str, task_id: str = SWAP_TASK) -> str:
    return f"{task_path(dag_id, run_id, task_id)}/-1/hitlDetails"


def answer(
    api: AirflowApi,
    dag_id: str,
    run_id: str,
    choice: str,
    *,
    user: str | None,
    digest: str | None = None,
    task_id: str = SWAP_TASK,
) -> tuple[int, Any]:
    """Answer the form of ``task_id`` as ``user``; the answer carries ``digest`` (default: the
    form's own, as the UI's form sends it back)."""
    if digest is None:
        status, detail = api.call("GET", hitl_path(dag_id, run_id, task_id), user=user)
        assert status == 200, detail
        digest = ((detail.get("params") or {}).get("plan_digest") or {}).get("value")
    payload = {"chosen_options": [choice], "params_input": {"plan_digest": digest} if digest else {}}
    return api.call("PATCH", hitl_path(dag_id, run_id, task_id), payload, user=user)


def task_state(db_path: Path, dag_id: str, run_id: str, task_id: str) -> str | None:
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?", (dag_id, run_id, task_id)
        ).fetchone()
    return row[0] if row else None


def awaiting_tasks(db_path: Path, dag_id: str, run_id: str) -> list[str]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT task_id FROM task_instance WHERE dag_id = ? AND run_id = ? AND state = 'awaiting_input'",
            (dag_id, run_id),
        ).fetchall()
    return [r[0] for r in rows]


def run_state(db_path: Path, dag_id: str, run_id: str) -> str | None:
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)).fetchone()
    return row[0] if row else None


class HitlApiServer:
    """`airflow api-server` on the DagRunner's Airflow home (its metadata DB), with users of the
    simple auth manager whose passwords the test knows."""

    def __init__(self, runner: Any, users: Mapping[str, str], roles: Mapping[str, str] | None = None) -> None:
        from hms_sandbox.cluster import free_port

        self.port = free_port()
        home = Path(runner.sandbox.state_dir) / "hitl-api"
        home.mkdir(exist_ok=True)
        passwords_file = home / "passwords.json"
        passwords_file.write_text(json.dumps(dict(users)))
        passwords_file.chmod(0o600)
        self.log_file = home / "api-server.log"
        self.env = {
            **runner.env,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{user}:{(roles or {}).get(user, 'admin')}" for user in users
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        }
        self.api = AirflowApi(self.port, users)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "airflow"), "api-server", "--port", str(self.port), "--host", "127.0.0.1"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.api.base}/api/v2/monitor/health", timeout=2):
                    return
            except OSError:
                assert self.process.poll() is None, (
                    "the API server died: " + self.log_file.read_text(errors="replace")[-3000:]
                )
                assert time.monotonic() < deadline, (
                    "the API server did not come up: " + self.log_file.read_text(errors="replace")[-3000:]
                )
                time.sleep(1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class DagsTestRun:
    output: str
    run_id: str
    state: str | None
    task_states: dict[str, str]
    answered: tuple[int, Any] | None  # the API's reply to the approval, when there was a form to answer


def run_dags_test_approving(
    runner: Any,
    server: HitlApiServer,
    dag_id: str,
    conf: Mapping[str, Any],
    *,
    user: str = APPROVER,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 900,
) -> DagsTestRun:
    """`airflow dags test dag_id --conf ...`; when its swap waits for approval, ``user`` approves
    it through the API server (and nothing else answers it)."""
    before = runner._latest_run_id(dag_id)
    argv = [str(VENV_BIN / "airflow"), "dags", "test", dag_id, "--conf", json.dumps(dict(conf))]
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, env={**runner.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        answered = None
        deadline = time.monotonic() + timeout_s
        try:
            while process.poll() is None:
                assert time.monotonic() < deadline, f"airflow dags test {dag_id} did not end within {timeout_s:.0f} s"
                run_id = runner._latest_run_id(dag_id)
                out.seek(0)
                # dag.test() logs this once its loop has seen the task parked: answering earlier
                # would race the park (Airflow 3.3.2 can fail a task answered while it parks).
                waiting = f"Waiting for Human-in-the-loop input for tasks: ['{SWAP_TASK}']" in out.read().decode(
                    errors="replace"
                )
                if (
                    answered is None
                    and waiting
                    and run_id != before
                    and task_state(runner.db_path, dag_id, run_id, SWAP_TASK) == "awaiting_input"
                ):
                    answered = answer(server.api, dag_id, run_id, "Approve", user=user)
                    assert answered[0] == 200, answered
                time.sleep(1)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        output = out.read().decode(errors="replace")
    run_id = runner._latest_run_id(dag_id)
    assert run_id and run_id != before, output[-6000:]
    states, _tries, state = runner._task_states(dag_id, run_id)
    return DagsTestRun(output, run_id, state, states, answered)
