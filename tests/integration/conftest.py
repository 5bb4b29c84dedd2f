"""Integration fixtures: one real sandbox per test worker and PostgreSQL major (a cluster with the
HMS database, a moto S3 server, a gpg key pair), an Airflow home migrated once per sandbox, and a
runner that executes the real DAGs from dags/ with `airflow dags test` (which calls dag.test()).

Only AWS itself is stood in for (by moto in server mode, spoken to over HTTP on 127.0.0.1).

PostgreSQL majors: every test runs on 15. A test (or a module, through ``pytestmark``) marked
``@pytest.mark.pg_majors(15, 18)`` runs once per major, its id saying which (``[pg15]``,
``[pg18]``); ``sandbox``, ``dag_runner``, ``primary_store``, ``restore_key``,
``dags_test_approvals`` and ``scratch_cluster`` then follow the test's ``pg_major``. The sandboxes
live in ``sandboxes`` (one per worker and session): each major's is started when a test first
needs it, beside the first (see worker_state_dir), and all stop at the end of the session; a
worker that runs no 18 test never starts one. pg_major is parametrized at module scope, so a
module's 15 tests run first and its 18 tests after them, each major's module fixtures set up once.
In a module where any test is marked, every test that uses a sandbox is parametrized (unmarked
ones with 15 alone): a module fixture cached for the default major would otherwise be handed to an
18 test.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from workdirs import state_root

from hms_sandbox.airflow_env import build_airflow_env

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SCALE_MB = int(os.environ.get("HMS_DR_TEST_SCALE_MB", "20"))
VENV_BIN = Path(sys.executable).parent


DEFAULT_MAJOR = 15
MAJORS_MARKER = "pg_majors"


def worker_state_dir(worker_id: str, major: int = DEFAULT_MAJOR) -> Path:
    """The state directory of this worker's sandbox of ``major``; another major's sits beside 15's."""
    # Not pytest's tmp_path: when the tests run as root the server runs as the postgres OS user,
    # which must be able to traverse every parent directory (see tests/workdirs.py).
    # HMS_DR_TEST_SANDBOX names a separate one, for two test runs side by side on one machine.
    name = os.environ.get("HMS_DR_TEST_SANDBOX")
    if name is None:
        first = state_root() / worker_id
    else:
        first = state_root() / (name if worker_id == "master" else f"{name}-{worker_id}")
    return first if major == DEFAULT_MAJOR else first.with_name(f"{first.name}-pg{major}")


def _marked_majors(obj: Any) -> tuple[int, ...] | None:
    marks = getattr(obj, "pytestmark", [])
    for mark in marks if isinstance(marks, list) else [marks]:
        if mark.name == MAJORS_MARKER:
            return tuple(mark.args)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """pg_major for the tests of a module that runs any test on more than one major."""
    if "pg_major" not in metafunc.fixturenames:
        return
    if any("pg_major" in mark.args[0] for mark in metafunc.definition.iter_markers("parametrize")):
        return  # parametrized by hand: then at scope="module", or the module fixtures refuse it
    module = metafunc.module
    mark = metafunc.definition.get_closest_marker(MAJORS_MARKER)
    if mark is not None:
        majors = tuple(mark.args)
    elif _marked_majors(module) is None and not any(
        _marked_majors(obj) for name, obj in vars(module).items() if name.startswith("test")
    ):
        return  # no test of this module asks for another major: the default fixture's 15, ids unchanged
    else:
        majors = (DEFAULT_MAJOR,)
    from hms_sandbox.pgmajors import SUPPORTED_MAJORS

    unknown = [m for m in majors if m not in SUPPORTED_MAJORS]
    assert majors and not unknown, (
        f"{metafunc.definition.nodeid}: pg_majors{majors}: the sandbox runs {SUPPORTED_MAJORS}"
    )
    metafunc.parametrize("pg_major", majors, ids=[f"pg{m}" for m in majors], scope="module")


@pytest.fixture(scope="session")
def pg_major() -> int:
    """The PostgreSQL major of a test not marked pg_majors."""
    return DEFAULT_MAJOR


class Sandboxes:
    """This worker's sandboxes, one per major, each started when first asked for, with its
    migrated DagRunner and its approval API server."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.started: dict[int, Any] = {}
        self.runners: dict[int, DagRunner] = {}
        self.approvals: dict[int, Any] = {}

    def sandbox(self, major: int) -> Any:
        if major not in self.started:
            from hms_sandbox import start_sandbox

            started = start_sandbox(
                state_dir=worker_state_dir(self.worker_id, major), scale_mb=TEST_SCALE_MB, pg_major=major
            )
            self.started[major] = started
            assert started.pg_major == major, f"the sandbox in {started.state_dir} runs {started.pg_major}, not {major}"
        return self.started[major]

    def dag_runner(self, major: int) -> DagRunner:
        if major not in self.runners:
            runner = DagRunner(self.sandbox(major))
            runner.migrate()
            self.runners[major] = runner
        return self.runners[major]

    def approval_server(self, major: int) -> Any:
        if major not in self.approvals:
            import secrets

            from hitl import APPROVER, HitlApiServer

            server = HitlApiServer(
                self.dag_runner(major), {"admin": secrets.token_urlsafe(12), APPROVER: secrets.token_urlsafe(12)}
            )
            server.start()
            self.approvals[major] = server
        return self.approvals[major]

    def stop(self) -> None:
        from hms_sandbox import stop_sandbox

        try:
            for server in self.approvals.values():
                server.stop()
        finally:
            for major in self.started:
                stop_sandbox(state_dir=worker_state_dir(self.worker_id, major))


@pytest.fixture(scope="session")
def sandboxes(worker_id: str) -> Iterator[Sandboxes]:
    """worker_id comes from pytest-xdist ("gw0", ..., or "master" without -n)."""
    pool = Sandboxes(worker_id)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="module")
def sandbox(sandboxes: Sandboxes, pg_major: int) -> Any:
    """This worker's sandbox of the test's PostgreSQL major."""
    return sandboxes.sandbox(pg_major)


@pytest.fixture(autouse=True)
def the_sandbox_runs_the_tests_major(request: pytest.FixtureRequest) -> None:
    """A test that uses a sandbox (or DAG runner) gets the one of its pg_major: a module fixture
    cached for another major (a module mixing pg_major parametrized by hand with unparametrized
    tests) fails the test instead of passing it on the wrong server."""
    for name, sandbox_of in (("sandbox", lambda s: s), ("dag_runner", lambda r: r.sandbox)):
        if name in request.fixturenames:
            major = request.getfixturevalue("pg_major")
            running = sandbox_of(request.getfixturevalue(name)).pg_major
            assert running == major, f"{request.node.nodeid}: {name}'s sandbox runs PostgreSQL {running}, not {major}"


@pytest.fixture(scope="module")
def scratch_cluster(worker_id: str, pg_major: int) -> Iterator[str]:
    """A throw-away cluster of the test's major, of its own (not the sandbox's): its superuser DSN."""
    import secrets
    import shutil
    import uuid

    from hms_sandbox.cluster import LocalCluster, free_port

    base = worker_state_dir(worker_id).parent / f"scratch-{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster(base / "data", free_port(), base / "log" / "server.log", base / "sockets", major=pg_major)
    password = secrets.token_urlsafe(24)
    cluster.init(password, data_checksums=False, conf={"fsync": "off"})
    cluster.start()
    try:
        yield cluster.dsn("postgres", password)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def primary_store(sandbox: Any) -> Any:
    from hms_dr.store import open_store

    return open_store(f"s3://{sandbox.primary_bucket}", s3_client=sandbox.s3_client())


@pytest.fixture(scope="module")
def restore_key(sandbox: Any) -> Any:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import EncryptionMode

    return DecryptionKey(
        EncryptionMode.PUBLIC_KEY, private_key=sandbox.secrets.gpg_secret_key, passphrase=sandbox.secrets.gpg_passphrase
    )


@dataclass
class DagRunOutcome:
    returncode: int
    output: str
    run_id: str | None
    state: str | None
    task_states: dict[str, str]
    task_tries: dict[str, int]


class DagRunner:
    """Runs a DAG from dags/ through `airflow dags test`, optionally with a policy variant."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.env = {**os.environ, **build_airflow_env(sandbox), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        self.db_path = Path(sandbox.paths.airflow_home) / "airflow.db"
        self.variants = Path(sandbox.state_dir) / "policy-variants"
        self.variants.mkdir(exist_ok=True)

    def migrate(self) -> None:
        done = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def policy_variant(self, name: str, overrides: Mapping[str, Any]) -> Path:
        """The sandbox policy with dotted keys overridden, written as a file of its own."""
        data = yaml.safe_load(Path(self.sandbox.paths.policy_file).read_text())
        data = copy.deepcopy(data)
        for dotted, value in overrides.items():
            node = data
            *parents, last = dotted.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
        path = self.variants / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(
        self,
        dag_id: str,
        *,
        policy: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 900,
        name: str = "variant",
        conf: Mapping[str, Any] | None = None,
    ) -> DagRunOutcome:
        run_env = dict(self.env)
        if policy:
            run_env["HMS_DR_POLICY"] = str(self.policy_variant(name, policy))
        run_env.update(env or {})
        before = self._latest_run_id(dag_id)
        done = subprocess.run(
            [str(VENV_BIN / "airflow"), "dags", "test", dag_id, *(["--conf", json.dumps(conf)] if conf else [])],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        output = done.stdout + done.stderr
        run_id = self._latest_run_id(dag_id)
        if run_id == before:
            run_id = None
        states, tries, run_state = self._task_states(dag_id, run_id)
        return DagRunOutcome(done.returncode, output, run_id, run_state, states, tries)

    def returned(self, dag_id: str, run_id: str | None, task_id: str) -> Any:
        """What a task of a run returned (its XCom return_value), decoded."""
        with sqlite3.connect(self.db_path) as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
                (dag_id, run_id, task_id),
            ).fetchone()
        assert row is not None, f"{dag_id}.{task_id} returned nothing in run {run_id}"
        value = json.loads(row[0])
        return json.loads(value) if isinstance(value, str) else value

    def _latest_run_id(self, dag_id: str) -> str | None:
        if not self.db_path.exists():
            return None
        with sqlite3.connect(self.db_path) as db:
            row = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
        return row[0] if row else None

    def _task_states(self, dag_id: str, run_id: str | None) -> tuple[dict[str, str], dict[str, int], str | None]:
        if run_id is None:
            return {}, {}, None
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            ).fetchall()
            run_state = db.execute(
                "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            ).fetchone()
        return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}, run_state[0] if run_state else None


@pytest.fixture(scope="module")
def dag_runner(sandboxes: Sandboxes, pg_major: int) -> DagRunner:
    """Runs DAGs on the sandbox of the test's major (its Airflow home migrated once a session)."""
    return sandboxes.dag_runner(pg_major)


def manifest_keys(store: Any, prefix: str) -> set[str]:
    return {o.key for o in store.list(prefix) if o.key.endswith("/manifest.json")}


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


class ScheduledAirflow:
    """A real scheduler, dag-processor, triggerer and API server (the execution API the tasks
    report to) on an Airflow home of its own, for tests where timing matters. Every DAG starts
    paused; a test unpauses the ones it needs and reads runs and XComs from the metadata DB."""

    COMPONENTS = ("scheduler", "dag-processor", "triggerer")

    def __init__(
        self,
        runner: DagRunner,
        name: str,
        policy: Mapping[str, Any] | None = None,
        ui_users: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``ui_users`` (name -> password) become admin users of the simple auth manager, as
        `make airflow` sets them up; without it Airflow makes its own (unknown) admin password.
        ``env`` adds Airflow settings of this test (AIRFLOW__...)."""
        from hms_sandbox.cluster import free_port

        home = Path(runner.sandbox.state_dir) / f"airflow-scheduled-{name}"
        home.mkdir(exist_ok=True)
        self.home = home
        self.db_path = home / "airflow.db"
        self.port = free_port()
        self.env = {
            **runner.env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
        if policy:
            self.env["HMS_DR_POLICY"] = str(runner.policy_variant(f"scheduled-{name}", policy))
        if ui_users:
            passwords_file = home / "ui-passwords.json"
            passwords_file.write_text(json.dumps(dict(ui_users)))
            passwords_file.chmod(0o600)
            self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{user}:admin" for user in ui_users)
            self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords_file)
        self.env.update(env or {})
        self.processes: list[subprocess.Popen[bytes]] = []

    def airflow(self, *args: str, timeout_s: float = 300) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert done.returncode == 0, f"airflow {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    def start(self) -> None:
        import time
        import urllib.request

        self.airflow("db", "migrate")
        commands = [["api-server", "--port", str(self.port), "--host", "127.0.0.1"], *([c] for c in self.COMPONENTS)]
        for command in commands:
            log = (self.home / f"{command[0]}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [str(VENV_BIN / "airflow"), *command],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the API server did not come up: " + self.log_tail("api-server")
                assert all(p.poll() is None for p in self.processes), "an Airflow component died: " + self.log_tail(
                    "scheduler"
                )
                time.sleep(1)

    def unpause_when_parsed(self, dag_id: str, timeout_s: float = 180) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            with sqlite3.connect(self.db_path) as db:
                parsed = db.execute("SELECT 1 FROM dag WHERE dag_id = ?", (dag_id,)).fetchone()
            if parsed:
                break
            assert time.monotonic() < deadline, f"{dag_id} was not parsed: " + self.log_tail("dag-processor")
            time.sleep(1)
        self.airflow("dags", "unpause", dag_id)

    def task_returns(self, dag_id: str, task_id: str) -> list[tuple[str, Any]]:
        """(run_id, return value) of every successful try of task_id, oldest first."""
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute(
                "SELECT x.run_id, x.value FROM xcom x JOIN task_instance t ON t.dag_id = x.dag_id AND t.run_id = x.run_id "
                "AND t.task_id = x.task_id WHERE x.dag_id = ? AND x.task_id = ? AND x.key = 'return_value' "
                "AND t.state = 'success' ORDER BY x.timestamp",
                (dag_id, task_id),
            ).fetchall()
        values = []
        for run_id, raw in rows:
            value = json.loads(raw)
            values.append((run_id, json.loads(value) if isinstance(value, str) else value))
        return values

    def run_states(self, dag_id: str) -> list[str]:
        with sqlite3.connect(self.db_path) as db:
            return [r[0] for r in db.execute("SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id", (dag_id,))]

    def log_tail(self, component: str, chars: int = 3000) -> str:
        path = self.home / f"{component}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def task_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted((self.home / "logs").rglob("*.log")))

    def stop(self) -> None:
        import signal

        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture()
def scheduled_airflow(dag_runner: DagRunner) -> Iterator[Any]:
    """A factory: scheduled_airflow(name, policy_overrides, ui_users, env) starts a ScheduledAirflow; all stop at teardown."""
    started: list[ScheduledAirflow] = []

    def start(
        name: str,
        policy: Mapping[str, Any] | None = None,
        ui_users: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ScheduledAirflow:
        airflow = ScheduledAirflow(dag_runner, name, policy, ui_users, env)
        started.append(airflow)
        airflow.start()
        return airflow

    yield start
    for airflow in started:
        airflow.stop()


@pytest.fixture(scope="module")
def dags_test_approvals(sandboxes: Sandboxes, pg_major: int) -> Any:
    """An API server on the metadata DB of `airflow dags test` (of the test's major), through which
    a test approves a swap as the sandbox policy's approver (see hitl.run_dags_test_approving);
    started once a session, stopped with the sandboxes."""
    return sandboxes.approval_server(pg_major)
