"""The daily DAG, run through Airflow on the sandbox, leaves a complete, encrypted set whose
stored bytes match the manifest and whose dump restores to exactly the baselines."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from restoring import drop_database, fetch_plain, observed_baselines, programs_for, restore_into_new_database

from hms_dr.baseline import diff_baselines
from hms_dr.catalog import find_set, key_for
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import parse_restore_list

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.pg_majors(15, 18)]

DAG_ID = "hms_daily_logical_backup"


@pytest.fixture(scope="module")
def daily_run(dag_runner: Any) -> Any:
    outcome = dag_runner.run(DAG_ID)
    assert outcome.state == "success", outcome.output[-6000:]
    return outcome


@pytest.fixture(scope="module")
def newest_set(daily_run: Any, primary_store: Any, sandbox: Any) -> Any:
    return find_set(primary_store, "hms-primary", BackupKind.LOGICAL, "latest")


def test_every_task_succeeded_once(daily_run: Any) -> None:
    assert daily_run.task_states == {
        "check_preconditions": "success",
        "dump_in_one_snapshot": "success",
        "read_back_payloads": "success",
        "publish_manifests": "success",
        "expire_old_sets": "success",
    }


def test_manifest_sha256_matches_the_stored_bytes_of_every_kind(newest_set: Any, primary_store: Any) -> None:
    for kind in (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA):
        backup_set = find_set(primary_store, "hms-primary", kind, newest_set.backup_set_id)
        for payload in backup_set.manifest.payloads:
            key = key_for("hms-primary", kind, backup_set.backup_set_id, payload.name)
            data = primary_store.get_bytes(key)
            assert len(data) == payload.size_bytes
            assert hashlib.sha256(data).hexdigest() == payload.sha256
            assert payload.name.endswith(".gpg")


def test_payloads_are_encrypted_not_readable_dumps(newest_set: Any, primary_store: Any) -> None:
    payload = newest_set.manifest.payloads[0]
    head = primary_store.get_bytes(key_for("hms-primary", BackupKind.LOGICAL, newest_set.backup_set_id, payload.name))[
        :4096
    ]
    assert not head.startswith(b"PGDMP")
    assert b"patients" not in head
    assert newest_set.manifest.body["encryption"]["mode"] == "public_key"


def test_dump_restores_into_an_empty_database_with_the_baseline_row_counts(
    newest_set: Any, primary_store: Any, restore_key: Any, sandbox: Any, tmp_path: Path
) -> None:
    expected = newest_set.manifest.baselines
    assert expected["tables"]["public.patients"]["rows"] > 0
    archive = fetch_plain(primary_store, newest_set, restore_key, tmp_path)
    assert archive.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == newest_set.manifest.payloads[0].plain_sha256
    database = restore_into_new_database(sandbox, archive)
    try:
        observed = observed_baselines(sandbox, database, expected)
        assert diff_baselines(expected, observed) == []
        assert {name: t["rows"] for name, t in observed["tables"].items()} == {
            name: t["rows"] for name, t in expected["tables"].items()
        }
    finally:
        drop_database(sandbox, database)


def test_schema_export_is_plain_sql_and_data_export_holds_only_the_policy_tables(
    newest_set: Any, primary_store: Any, restore_key: Any, sandbox: Any, tmp_path: Path
) -> None:
    schema_set = find_set(primary_store, "hms-primary", BackupKind.SCHEMA, newest_set.backup_set_id)
    schema_sql = fetch_plain(primary_store, schema_set, restore_key, tmp_path).read_text()
    assert "CREATE TABLE public.patients" in schema_sql
    assert "COPY public.patients" not in schema_sql
    data_set = find_set(primary_store, "hms-primary", BackupKind.DATA, newest_set.backup_set_id)
    assert set(data_set.manifest.baselines["tables"]) == {"public.appointments", "public.billing"}
    archive = fetch_plain(primary_store, data_set, restore_key, tmp_path)
    # The server's major: pg_restore 15 cannot read an 18 archive.
    pg_restore = programs_for(sandbox.superuser_dsn()).program("pg_restore")
    listing = subprocess.run([pg_restore, "--list", str(archive)], capture_output=True, text=True, check=True).stdout
    table_data = sorted(name for kind, _, name in parse_restore_list(listing) if kind == "TABLE DATA")
    assert table_data == ["appointments", "billing"]
    assert data_set.manifest.body["parent"] == {"kind": "logical", "backup_set_id": newest_set.backup_set_id}


def test_asset_event_names_the_set_and_its_manifest(daily_run: Any, newest_set: Any, dag_runner: Any) -> None:
    import sqlite3

    with sqlite3.connect(dag_runner.db_path) as db:
        row = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? ORDER BY e.id DESC LIMIT 1",
            ("hms://backups/logical",),
        ).fetchone()
    assert row is not None
    assert newest_set.backup_set_id in row[0] and "manifest.json" in row[0]


def test_no_sandbox_secret_appears_in_the_task_logs(daily_run: Any, sandbox: Any) -> None:
    logs = daily_run.output
    assert "backup set" in logs  # the logs were captured
    for secret in sandbox.secrets.values():
        assert secret not in logs
    assert "PRIVATE KEY" not in logs
