"""Faults of the daily backup, each run through Airflow on the real sandbox: the run fails with a
one-line reason, retries only what is transient, and leaves no set that looks valid."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from hms_sandbox.cluster import free_port

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_daily_logical_backup"
ONE_QUICK_RETRY = {"logical_backup.retries": 1, "logical_backup.retry_delay_s": 0}
NO_RETRY = {"logical_backup.retries": 0}


def all_keys(store: Any) -> set[str]:
    return {o.key for o in store.list("hms-primary/")}


@pytest.fixture
def store_snapshot(primary_store: Any) -> Iterator[set[str]]:
    """The keys in the primary store before the test; the test asserts what it adds."""
    yield all_keys(primary_store)


def test_unreachable_store_is_retried_then_fails_with_no_manifest(
    dag_runner: Any, primary_store: Any, store_snapshot: set[str]
) -> None:
    closed_port = free_port()
    unreachable = (
        f'{{"conn_type": "aws", "login": "AKIAEXAMPLE", "password": "{secrets.token_urlsafe(12)}",'
        f' "extra": {{"endpoint_url": "http://127.0.0.1:{closed_port}", "region_name": "us-east-1"}}}}'
    )
    outcome = dag_runner.run(
        DAG_ID, policy=ONE_QUICK_RETRY, env={"AIRFLOW_CONN_HMS_STORAGE": unreachable}, name="store-down"
    )
    assert outcome.state == "failed"
    assert outcome.task_states["check_preconditions"] == "failed"
    assert outcome.task_tries["check_preconditions"] == 2, "a transient store error must be retried"
    assert outcome.task_states["dump_in_one_snapshot"] == "upstream_failed"
    assert "StoreUnavailable" in outcome.output and f"127.0.0.1:{closed_port}" in outcome.output
    assert all_keys(primary_store) == store_snapshot


def test_pg_dump_killed_mid_run_leaves_no_set_and_no_payload(
    dag_runner: Any, sandbox: Any, primary_store: Any, store_snapshot: set[str]
) -> None:
    killed: list[int] = []
    stop = threading.Event()
    # Only a pg_dump of THIS sandbox (another test worker may be dumping its own right now).
    our_port = str(sandbox.pg_port)

    def kill_first_pg_dump() -> None:
        while not stop.is_set() and not killed:
            for process in psutil.process_iter(["name", "cmdline"]):
                try:
                    if process.info["name"] != "pg_dump" or "--format=c" not in (process.info["cmdline"] or []):
                        continue
                    if process.environ().get("PGPORT") != our_port:
                        continue
                    process.send_signal(signal.SIGKILL)
                    killed.append(process.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            time.sleep(0.01)

    killer = threading.Thread(target=kill_first_pg_dump, daemon=True)
    killer.start()
    try:
        outcome = dag_runner.run(DAG_ID, policy=NO_RETRY, name="pg-dump-killed")
    finally:
        stop.set()
        killer.join()
    assert killed, "the test never saw pg_dump running"
    assert outcome.state == "failed"
    assert outcome.task_states["dump_in_one_snapshot"] == "failed"
    assert "pg_dump was killed" in outcome.output
    assert outcome.task_states["publish_manifests"] == "upstream_failed"
    assert all_keys(primary_store) == store_snapshot, "the failed run left payloads behind"


def test_wrong_encryption_key_fails_in_preflight_naming_both_fingerprints(
    dag_runner: Any, sandbox: Any, primary_store: Any, store_snapshot: set[str]
) -> None:
    wrong = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"
    outcome = dag_runner.run(DAG_ID, policy={**ONE_QUICK_RETRY, "encryption.key_id": wrong}, name="wrong-key")
    assert outcome.state == "failed"
    assert outcome.task_tries["check_preconditions"] == 1, "a wrong key is not transient: no retry"
    assert f"the backup public key has fingerprint {sandbox.fingerprint}" in outcome.output
    assert f"the policy's encryption.key_id is {wrong}" in outcome.output
    assert all_keys(primary_store) == store_snapshot


def test_database_down_fails_preflight_with_the_reason(
    dag_runner: Any, sandbox: Any, primary_store: Any, store_snapshot: set[str]
) -> None:
    cluster = sandbox.cluster()
    cluster.stop()
    try:
        outcome = dag_runner.run(DAG_ID, policy=ONE_QUICK_RETRY, name="database-down")
    finally:
        cluster.start()
    assert outcome.state == "failed"
    assert outcome.task_states["check_preconditions"] == "failed"
    assert outcome.task_tries["check_preconditions"] == 2
    assert f"cannot connect to hms_backup@127.0.0.1:{sandbox.pg_port}/hospital_management" in outcome.output
    assert "Connection refused" in outcome.output or "connection refused" in outcome.output
    assert outcome.task_states["dump_in_one_snapshot"] == "upstream_failed"
    assert all_keys(primary_store) == store_snapshot


def test_not_enough_staging_space_is_refused_before_dumping(
    dag_runner: Any, primary_store: Any, store_snapshot: set[str]
) -> None:
    petabyte_in_mib = 1 << 30
    outcome = dag_runner.run(DAG_ID, policy={**NO_RETRY, "staging.min_free_mib": petabyte_in_mib}, name="no-space")
    assert outcome.state == "failed"
    assert "not enough free space in staging directory" in outcome.output
    assert outcome.task_states["dump_in_one_snapshot"] == "upstream_failed"
    assert all_keys(primary_store) == store_snapshot


def test_not_enough_space_in_a_file_store_is_refused_before_dumping(dag_runner: Any, sandbox: Any) -> None:
    root = sandbox.state_dir / "nas-too-small"
    root.mkdir(mode=0o700, exist_ok=True)
    free_bytes = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
    database_bytes = 20 << 20
    ratio_beyond_free_space = 2 * free_bytes / database_bytes
    outcome = dag_runner.run(
        DAG_ID,
        policy={**NO_RETRY, "store.primary_url": f"file://{root}", "staging.reserve_ratio": ratio_beyond_free_space},
        name="nas-too-small",
    )
    assert outcome.state == "failed"
    assert f"not enough free space in store file://{root}" in outcome.output
    assert outcome.task_states["dump_in_one_snapshot"] == "upstream_failed"
    assert [p for p in root.rglob("*") if p.is_file()] == []
