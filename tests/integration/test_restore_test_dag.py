"""hms_restore_test through Airflow on the sandbox: a good set passes with every table and view
at baseline = observed; damaged sets, a wrong key and a production target fail clearly; the
scratch database never outlives a run."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from restoring import programs_for

from hms_dr.catalog import find_set, key_for
from hms_dr.manifest import MANIFEST_NAME, BackupKind, dump_manifest

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
DAG_ID = "hms_restore_test"


def scratch_databases(sandbox: Any) -> list[str]:
    password = sandbox.secrets.role_passwords["restore_target_postgres"]
    dsn = f"host=127.0.0.1 port={sandbox.restore_target_port} user=postgres password={password} dbname=postgres"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'hms_restore_test_%'").fetchall()
    return [r[0] for r in rows]


def newest_report(store: Any) -> dict[str, Any]:
    summaries = sorted(o.key for o in store.list(f"{CLUSTER}/restore-test/") if o.key.endswith("/summary.json"))
    return json.loads(store.get_bytes(summaries[-1]))


@pytest.fixture(scope="module")
def good_set(dag_runner: Any, primary_store: Any) -> Any:
    outcome = dag_runner.run("hms_daily_logical_backup")
    assert outcome.state == "success", outcome.output[-4000:]
    return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")


def clone_set(
    store: Any,
    source: Any,
    new_id: str,
    *,
    payload: Callable[[bytes], bytes] | None = None,
    manifest: Callable[[dict], dict] | None = None,
    keep_sha: bool = False,
    plain: tuple[str, int] | None = None,
) -> str:
    """A copy of ``source`` under ``new_id``, its payload and/or manifest altered on the way."""
    body = dict(source.manifest.body)
    entry = dict(body["payloads"][0])
    data = store.get_bytes(key_for(CLUSTER, BackupKind.LOGICAL, source.backup_set_id, entry["name"]))
    if payload is not None:
        data = payload(data)
        if not keep_sha:
            entry.update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if plain is not None:
        entry.update(plain_sha256=plain[0], plain_size_bytes=plain[1])
    store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, new_id, entry["name"]), data)
    body.update(backup_set_id=new_id, payloads=[entry])
    if manifest is not None:
        body = manifest(body)
    store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, new_id, MANIFEST_NAME), dump_manifest(body))
    return new_id


def test_a_good_set_restores_and_every_check_shows_baseline_equal_to_observed(
    dag_runner: Any, good_set: Any, primary_store: Any, sandbox: Any
) -> None:
    outcome = dag_runner.run(DAG_ID, conf={"mode": "logical", "backup_id": good_set.backup_set_id})
    assert outcome.state == "success", outcome.output[-6000:]
    report = newest_report(primary_store)
    assert report["backup_set_id"] == good_set.backup_set_id and report["passed"] is True
    targets = {c["target"] for c in report["checks"]}
    assert set(good_set.manifest.baselines["tables"]) <= targets
    assert "public.v_patient_summary" in targets
    row_counts = {c["target"]: c for c in report["checks"] if c["check"] == "row_count"}
    for table, record in good_set.manifest.baselines["tables"].items():
        assert row_counts[table]["expected"] == row_counts[table]["observed"] == record["rows"]
    assert 0 < report["rto_s"] < report["rto_target_s"]
    assert set(report["steps_s"]) >= {"download_and_verify", "decrypt", "pg_restore", "quality_checks"}
    assert scratch_databases(sandbox) == []


def test_one_flipped_byte_fails_before_decrypting_naming_the_file(
    dag_runner: Any, good_set: Any, primary_store: Any, sandbox: Any
) -> None:
    def flip(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]

    set_id = clone_set(primary_store, good_set, "20200101T000001Z", payload=flip, keep_sha=True)
    outcome = dag_runner.run(
        DAG_ID, conf={"mode": "logical", "backup_id": set_id}, policy={"logical_backup.retries": 0}, name="flipped"
    )
    assert outcome.state == "failed"
    assert outcome.task_states["restore_into_scratch"] == "failed"
    assert f"{set_id}/dump.pgdump.zst.gpg does not match the sha256 in its manifest" in outcome.output
    assert outcome.task_states["drop_scratch_database"] == "success"
    assert scratch_databases(sandbox) == []


def test_a_truncated_payload_fails_naming_the_file_and_both_sizes(
    dag_runner: Any, good_set: Any, primary_store: Any
) -> None:
    set_id = clone_set(primary_store, good_set, "20200101T000002Z", payload=lambda d: d[: len(d) // 2], keep_sha=True)
    outcome = dag_runner.run(DAG_ID, conf={"mode": "logical", "backup_id": set_id}, name="truncated")
    assert outcome.state == "failed"
    size = good_set.manifest.payloads[0].size_bytes
    assert f"{set_id}/dump.pgdump.zst.gpg is {size // 2} bytes, its manifest says {size}" in outcome.output


def test_a_manifest_that_does_not_match_its_payload_fails(dag_runner: Any, good_set: Any, primary_store: Any) -> None:
    def lie(body: dict) -> dict:
        body["payloads"][0]["sha256"] = "0" * 64
        return body

    set_id = clone_set(primary_store, good_set, "20200101T000003Z", manifest=lie)
    outcome = dag_runner.run(DAG_ID, conf={"mode": "logical", "backup_id": set_id}, name="lying-manifest")
    assert outcome.state == "failed"
    assert "does not match the sha256 in its manifest" in outcome.output


def test_baselines_the_restore_does_not_meet_fail_naming_table_and_view_and_teardown_runs(
    dag_runner: Any, good_set: Any, primary_store: Any, sandbox: Any
) -> None:
    # The same dump under baselines that claim more rows and another view: as if rows had been
    # deleted from the restored database before the checks.
    def inflate(body: dict) -> dict:
        baselines = json.loads(json.dumps(body["baselines"]))
        baselines["tables"]["public.billing"]["rows"] += 3
        baselines["views"]["public.v_patient_summary"]["fingerprint"] = "f" * 64
        body["baselines"] = baselines
        return body

    set_id = clone_set(primary_store, good_set, "20200101T000004Z", manifest=inflate)
    outcome = dag_runner.run(DAG_ID, conf={"mode": "logical", "backup_id": set_id}, name="baseline-mismatch")
    assert outcome.state == "failed"
    assert outcome.task_states["restore_into_scratch"] == "success"
    assert outcome.task_states["check_against_baselines"] == "failed"
    assert "public.billing" in outcome.output and "public.v_patient_summary" in outcome.output
    assert outcome.task_states["drop_scratch_database"] == "success"
    assert scratch_databases(sandbox) == []
    report = newest_report(primary_store)
    assert report["backup_set_id"] == set_id and report["passed"] is False


def test_a_wrong_restore_key_fails_before_any_restore_starts(dag_runner: Any, good_set: Any, sandbox: Any) -> None:
    import shutil
    import uuid

    from hms_sandbox.keys import export_secret_key, generate_key_pair, stop_gpg_agent

    home = sandbox.state_dir / f"gpg-{uuid.uuid4().hex[:8]}"
    home.mkdir(mode=0o700)
    try:
        other_passphrase = secrets.token_hex(16)  # a key that is not ours, generated per run
        fingerprint = generate_key_pair(home, "Someone Else <else@example.invalid>", other_passphrase)
        other_key = export_secret_key(home, fingerprint, other_passphrase)
    finally:
        stop_gpg_agent(home)
        shutil.rmtree(home, ignore_errors=True)
    wrong = json.dumps({"conn_type": "generic", "password": other_passphrase, "extra": {"private_key": other_key}})
    outcome = dag_runner.run(
        DAG_ID,
        conf={"mode": "logical", "backup_id": good_set.backup_set_id},
        env={"AIRFLOW_CONN_HMS_RESTORE_KEY": wrong},
        name="wrong-key",
    )
    assert outcome.state == "failed"
    assert "encrypted to a key the restore key connection does not hold" in outcome.output
    assert "pg_restore -j" not in outcome.output
    assert scratch_databases(sandbox) == []


def test_a_restore_target_pointing_at_production_is_refused_before_anything_runs(
    dag_runner: Any, good_set: Any, sandbox: Any
) -> None:
    production = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": sandbox.pg_port,
            "login": "postgres",
            "password": sandbox.secrets.role_passwords["postgres"],
            "schema": "postgres",
        }
    )
    outcome = dag_runner.run(
        DAG_ID,
        conf={"mode": "logical", "backup_id": good_set.backup_set_id},
        env={"AIRFLOW_CONN_HMS_RESTORE_TARGET": production},
        name="production-target",
    )
    assert outcome.state == "failed"
    assert outcome.task_states["choose_backup_set"] == "failed"
    assert "is the production cluster" in outcome.output
    assert outcome.task_states["restore_into_scratch"] == "upstream_failed"


def encrypted_dump_without(sandbox: Any, table: str, staging: Any) -> tuple[bytes, str, int]:
    """What a broken backup would hold: pg_dump of the sandbox database leaving out one table,
    compressed and encrypted exactly as the daily backup does."""
    from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home
    from hms_dr.pgtools import ConnectionInfo, pg_dump_argv, tool_env
    from hms_dr.policy import EncryptionMode
    from hms_dr.streams import Pipeline, Stage

    conn = ConnectionInfo(
        "127.0.0.1",
        sandbox.pg_port,
        "hms_backup",
        sandbox.database,
        password=sandbox.secrets.role_passwords["hms_backup"],
    )
    key = EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)
    argv = [
        *pg_dump_argv(programs_for(sandbox.superuser_dsn()), snapshot=None, archive_format="c", compress_level=0),
        f"--exclude-table={table}",
    ]
    with gpg_home(staging) as home:
        check_encryption_key(home, key)
        stages = [
            Stage("pg_dump", argv, env=tool_env(conn)),
            Stage("zstd", ["zstd", "-q", "-c", "-1"]),
            encrypt_stage(home, key),
        ]
        plain = hashlib.sha256()
        sizes = [0]

        def tap(chunk: bytes) -> None:
            plain.update(chunk)
            sizes[0] += len(chunk)

        with Pipeline(stages, tap=tap, tap_after=1) as pipeline:
            encrypted = pipeline.output.read()
    return encrypted, plain.hexdigest(), sizes[0]


def test_a_dump_missing_a_table_fails_naming_the_table(
    dag_runner: Any, good_set: Any, primary_store: Any, sandbox: Any, tmp_path: Any
) -> None:
    broken, plain_sha256, plain_size = encrypted_dump_without(sandbox, "public.audit_log", tmp_path)
    set_id = clone_set(
        primary_store, good_set, "20200101T000005Z", payload=lambda _: broken, plain=(plain_sha256, plain_size)
    )
    outcome = dag_runner.run(DAG_ID, conf={"mode": "logical", "backup_id": set_id}, name="missing-table")
    assert outcome.state == "failed"
    assert outcome.task_states["restore_into_scratch"] == "success"
    assert outcome.task_states["check_against_baselines"] == "failed"
    assert "public.audit_log" in outcome.output
    assert scratch_databases(sandbox) == []


def test_rows_deleted_in_the_scratch_database_before_the_checks_fail_naming_the_table(
    dag_runner: Any, good_set: Any, sandbox: Any
) -> None:
    import sqlite3
    import threading
    import time

    before = dag_runner._latest_run_id(DAG_ID)
    tampered: list[str] = []
    stop = threading.Event()

    def restore_task_state() -> str | None:
        run_id = dag_runner._latest_run_id(DAG_ID)
        if run_id is None or run_id == before:
            return None
        with sqlite3.connect(dag_runner.db_path, timeout=1) as db:
            row = db.execute(
                "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = 'restore_into_scratch'",
                (DAG_ID, run_id),
            ).fetchone()
        return row[0] if row else None

    def delete_rows_between_restore_and_checks() -> None:
        # The checks task starts by importing Great Expectations (seconds): rows deleted as soon
        # as the restore task has succeeded are gone before the first check query runs.
        password = sandbox.secrets.role_passwords["restore_target_postgres"]
        while not stop.is_set():
            try:
                state = restore_task_state()
            except sqlite3.OperationalError:
                state = None
            if state == "success":
                (scratch,) = scratch_databases(sandbox)
                dsn = f"host=127.0.0.1 port={sandbox.restore_target_port} user=postgres password={password} dbname={scratch}"
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(
                        "DELETE FROM public.payments WHERE id IN (SELECT id FROM public.payments ORDER BY id LIMIT 3)"
                    )
                tampered.append(scratch)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=delete_rows_between_restore_and_checks, daemon=True)
    watcher.start()
    try:
        outcome = dag_runner.run(
            DAG_ID, conf={"mode": "logical", "backup_id": good_set.backup_set_id}, name="rows-deleted"
        )
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert tampered, "the restore finished without the test seeing it"
    expected = good_set.manifest.baselines["tables"]["public.payments"]["rows"]
    assert outcome.state == "failed"
    assert outcome.task_states["check_against_baselines"] == "failed"
    assert (
        "public.payments" in outcome.output and str(expected) in outcome.output and str(expected - 3) in outcome.output
    )
    assert scratch_databases(sandbox) == []
