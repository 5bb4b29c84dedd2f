"""Integration fixtures: one real sandbox per test worker (PostgreSQL 15 cluster with the HMS
database, a moto S3 server, a gpg key pair), an Airflow home migrated once, and a runner
that executes the real DAGs from dags/ with `airflow dags test` (which calls dag.test()).

Only AWS itself is stood in for (by moto in server mode, spoken to over HTTP on 127.0.0.1).
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SCALE_MB = int(os.environ.get("HMS_DR_TEST_SCALE_MB", "20"))
VENV_BIN = Path(sys.executable).parent


def worker_state_dir(worker_id: str) -> Path:
    # Under the repository, not pytest's tmp_path: when the tests run as root the server runs as
    # the postgres OS user, which must be able to traverse every parent directory.
    # HMS_DR_TEST_SANDBOX names a separate one, for two test runs side by side on one machine.
    name = os.environ.get("HMS_DR_TEST_SANDBOX")
    if name is None:
        return REPO_ROOT / ".sandbox-test" / worker_id
    return REPO_ROOT / ".sandbox-test" / (name if worker_id == "master" else f"{name}-{worker_id}")


@pytest.fixture(scope="session")
def sandbox(worker_id: str) -> Iterator[Any]:
    """worker_id comes from pytest-xdist ("gw0", ..., or "master" without -n)."""
    from hms_dr.sandbox import start_sandbox, stop_sandbox

    state_dir = worker_state_dir(worker_id)
    started = start_sandbox(state_dir=state_dir, scale_mb=TEST_SCALE_MB)
    try:
        yield started
    finally:
        stop_sandbox(state_dir=state_dir)


@pytest.fixture(scope="module")
def scratch_cluster(worker_id: str) -> Iterator[str]:
    """A throw-away PostgreSQL 15 cluster of its own (not the sandbox's): its superuser DSN."""
    import secrets
    import shutil
    import uuid

    from hms_dr.sandbox.cluster import LocalCluster, free_port

    base = worker_state_dir(worker_id).parent / f"scratch-{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster(base / "data", free_port(), base / "log" / "server.log", base / "sockets")
    password = secrets.token_urlsafe(24)
    cluster.init(password, data_checksums=False, conf={"fsync": "off"})
    cluster.start()
    try:
        yield cluster.dsn("postgres", password)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def primary_store(sandbox: Any) -> Any:
    from hms_dr.store import open_store

    return open_store(f"s3://{sandbox.primary_bucket}", s3_client=sandbox.s3_client())


@pytest.fixture(scope="session")
def restore_key(sandbox: Any) -> Any:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import EncryptionMode

    return DecryptionKey(EncryptionMode.PUBLIC_KEY, private_key=sandbox.secrets.gpg_secret_key, passphrase=sandbox.secrets.gpg_passphrase)


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
        self.env = {**os.environ, **sandbox.env(), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        self.db_path = Path(sandbox.paths.airflow_home) / "airflow.db"
        self.variants = Path(sandbox.state_dir) / "policy-variants"
        self.variants.mkdir(exist_ok=True)

    def migrate(self) -> None:
        done = subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=600)
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
            env=run_env, capture_output=True, text=True, timeout=timeout_s,
        )
        output = done.stdout + done.stderr
        run_id = self._latest_run_id(dag_id)
        if run_id == before:
            run_id = None
        states, tries, run_state = self._task_states(dag_id, run_id)
        return DagRunOutcome(done.returncode, output, run_id, run_state, states, tries)

    def _latest_run_id(self, dag_id: str) -> str | None:
        if not self.db_path.exists():
            return None
        with sqlite3.connect(self.db_path) as db:
            row = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)).fetchone()
        return row[0] if row else None

    def _task_states(self, dag_id: str, run_id: str | None) -> tuple[dict[str, str], dict[str, int], str | None]:
        if run_id is None:
            return {}, {}, None
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            ).fetchall()
            run_state = db.execute("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)).fetchone()
        return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}, run_state[0] if run_state else None


@pytest.fixture(scope="session")
def dag_runner(sandbox: Any) -> DagRunner:
    runner = DagRunner(sandbox)
    runner.migrate()
    return runner


def manifest_keys(store: Any, prefix: str) -> set[str]:
    return {o.key for o in store.list(prefix) if o.key.endswith("/manifest.json")}


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
