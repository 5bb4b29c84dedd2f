"""hms_dr_pitr through Airflow on the sandbox (runbook scenario 2).

A base backup of the sandbox, then rows committed, a moment T, and a destructive DELETE; the WAL
is shipped. hms_dr_pitr to T builds a NEW cluster that has the rows, while the sandbox's own
cluster (production) is untouched: still running, still without the rows, same identity. With
``promote`` off the new cluster pauses at T, read-only, and opens with pg_promote(). Bad requests
that pass the trigger form are refused by the first task with one line, and nothing is created.
Every run leaves its audit records. The module's sets go to a cluster name of its own.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from archiving import Archiver, switch_wal

from hms_dr.audit import read_audit_records
from hms_dr.crypto import EncryptionKey
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.policy import EncryptionMode
from hms_dr.wal.ship import ship_spool
from hms_sandbox.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_dr_pitr"
CLUSTER = "hms-pitr-drill"  # this module's base backups, WAL and audit records only
PROBE_ROWS = 500
STEPS = ("validate_request", "recover_cluster", "report_connection")


@dataclass
class Scenario:
    sandbox: Any
    before_delete: str  # T: after the rows were committed, before the DELETE
    system_identifier: str
    root: Path  # the sandbox policy's allowed data root

    def run(self, dag_runner: Any, name: str, **conf: Any) -> Any:
        base = {"target_type": "time", "target": self.before_delete, "reason": f"drill {name}: rows deleted by mistake"}
        return dag_runner.run(DAG_ID, name="pitr", policy={"cluster.name": CLUSTER}, conf={**base, **conf})


def production(sandbox: Any, query: str) -> Any:
    import psycopg

    with psycopg.connect(sandbox.superuser_dsn(sandbox.database), autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


@pytest.fixture(scope="module")
def scenario(sandbox: Any, primary_store: Any) -> Iterator[Scenario]:
    import psycopg

    key = EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)
    staging = Path(sandbox.paths.staging_dir) / f"pitr-dag-{uuid.uuid4().hex[:6]}"
    staging.mkdir(mode=0o700, parents=True)
    replica = ConnectionInfo(
        "127.0.0.1",
        sandbox.pg_port,
        "hms_replica",
        sandbox.database,
        password=sandbox.secrets.role_passwords["hms_replica"],
    )
    root = Path(sandbox.paths.state_dir) / "pitr"
    try:
        take_base_backup(replica, primary_store, CLUSTER, encryption_key=key, staging_dir=staging, zstd_level=1)
        with psycopg.connect(sandbox.superuser_dsn(sandbox.database), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS dr_pitr_probe")
            conn.execute("CREATE TABLE dr_pitr_probe (id int PRIMARY KEY, note text NOT NULL)")
            conn.execute(f"INSERT INTO dr_pitr_probe SELECT g, md5(g::text) FROM generate_series(1, {PROBE_ROWS}) g")
            time.sleep(1.0)
            before_delete = conn.execute("SELECT clock_timestamp()").fetchone()[0].isoformat()  # type: ignore[index]
            time.sleep(1.0)
            conn.execute("DELETE FROM dr_pitr_probe")  # the destructive statement, committed at once
            segment = switch_wal(conn)
        archiver = Archiver.of_sandbox(sandbox)
        archiver.wait_spooled([segment])
        # Left in the spool: hms_wal_archive ships them for the sandbox's own cluster name too.
        ship_spool(
            primary_store,
            CLUSTER,
            archiver.spool,
            encryption_key=key,
            zstd_level=1,
            staging_dir=staging,
            remove_from_spool=False,
        )
        system_identifier = str(production(sandbox, "SELECT system_identifier FROM pg_control_system()"))
        yield Scenario(sandbox, before_delete, system_identifier, root)
    finally:
        for data_dir in root.glob("*/data") if root.exists() else []:
            LocalCluster(data_dir, 1, data_dir.parent / "log" / "x.log").stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        with psycopg.connect(sandbox.superuser_dsn(sandbox.database), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS dr_pitr_probe")
        for obj in primary_store.list(f"{CLUSTER}/"):
            primary_store.delete(obj.key)


def returned(dag_runner: Any, run_id: str, task_id: str) -> Any:
    with sqlite3.connect(dag_runner.db_path) as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
            (DAG_ID, run_id, task_id),
        ).fetchone()
    assert row is not None, f"{task_id} returned nothing"
    value = json.loads(row[0])
    return json.loads(value) if isinstance(value, str) else value


def recovered_count(sandbox: Any, port: int) -> tuple[int, bool]:
    """Rows of the probe table in the recovered cluster (production's roles and passwords), and
    whether it is still in recovery."""
    import psycopg

    dsn = f"host=127.0.0.1 port={port} dbname={sandbox.database} user=postgres password={sandbox.secrets.role_passwords['postgres']}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        count = int(conn.execute("SELECT count(*) FROM dr_pitr_probe").fetchone()[0])  # type: ignore[index]
        in_recovery = bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])  # type: ignore[index]
    return count, in_recovery


def audit_of(primary_store: Any, run_id: str) -> list[dict[str, Any]]:
    return [r for r in read_audit_records(primary_store, CLUSTER) if r["run_id"] == run_id]


@pytest.mark.pg_majors(15, 18)
def test_recovery_to_just_before_the_delete_builds_a_new_cluster_with_the_rows(
    scenario: Scenario, dag_runner: Any, primary_store: Any
) -> None:
    data_dir = scenario.root / "scenario2" / "data"
    outcome = scenario.run(dag_runner, "promoted", data_directory=str(data_dir))
    assert outcome.state == "success", outcome.output[-8000:]
    assert outcome.task_states == {**{t: "success" for t in STEPS}, "record_outcome": "success"}
    report = returned(dag_runner, outcome.run_id, "report_connection")
    assert report["state"] == "promoted" and report["data_dir"] == str(data_dir)
    assert f"psql -h 127.0.0.1 -p {report['port']} -U hms_backup {scenario.sandbox.database}" in outcome.output
    assert 0 < report["rto_s"] < 900 and report["within_rto"]

    assert recovered_count(scenario.sandbox, report["port"]) == (PROBE_ROWS, False)
    # Production is untouched: same cluster, still serving, still without the deleted rows.
    assert production(scenario.sandbox, "SELECT count(*) FROM dr_pitr_probe") == 0
    assert (
        str(production(scenario.sandbox, "SELECT system_identifier FROM pg_control_system()"))
        == scenario.system_identifier
    )
    assert production(scenario.sandbox, "SELECT pg_is_in_recovery()") is False
    assert report["port"] != scenario.sandbox.pg_port

    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["started", "succeeded"]
    assert all(
        r["triggered_by"] == "dag_test" and r["reason"] == "drill promoted: rows deleted by mistake" for r in records
    )
    assert (
        records[0]["params"]["data_directory"] == str(data_dir)
        and records[0]["params"]["target"] == scenario.before_delete
    )
    assert records[1]["details"]["report"]["rto_s"] == report["rto_s"]


def test_without_promotion_the_new_cluster_pauses_at_the_target_and_opens_with_pg_promote(
    scenario: Scenario, dag_runner: Any
) -> None:
    import psycopg

    outcome = scenario.run(dag_runner, "paused", data_directory=str(scenario.root / "paused" / "data"), promote=False)
    assert outcome.state == "success", outcome.output[-8000:]
    report = returned(dag_runner, outcome.run_id, "report_connection")
    assert report["state"] == "paused" and "SELECT pg_promote()" in outcome.output
    assert recovered_count(scenario.sandbox, report["port"]) == (PROBE_ROWS, True)
    dsn = f"host=127.0.0.1 port={report['port']} dbname=postgres user=postgres password={scenario.sandbox.secrets.role_passwords['postgres']}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_promote(true, 60)").fetchone()[0] is True  # type: ignore[index]
    assert recovered_count(scenario.sandbox, report["port"]) == (PROBE_ROWS, False)


def test_a_non_empty_data_directory_the_form_accepts_is_refused_by_the_first_task_and_left_as_it_was(
    scenario: Scenario, dag_runner: Any, primary_store: Any
) -> None:
    data_dir = scenario.root / "occupied" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("15\n")
    outcome = scenario.run(dag_runner, "occupied", data_directory=str(data_dir))
    assert outcome.state == "failed"
    assert outcome.task_states == {
        "validate_request": "failed",
        "recover_cluster": "upstream_failed",
        "report_connection": "upstream_failed",
        "record_outcome": "success",
    }
    expected = f"recovery data directory {data_dir} is not empty: refused, nothing was touched"
    assert expected in outcome.output
    assert [p.name for p in data_dir.iterdir()] == ["PG_VERSION"]
    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["failed"] and expected in records[0]["outcome"]


def test_a_target_before_the_oldest_base_backup_is_refused_by_the_plan_the_first_task_runs(
    scenario: Scenario, primary_store: Any, restore_key: Any
) -> None:
    """validate_request calls the engine's plan (check_recovery) before anything is created; a
    target no base backup reaches is the request's to fix (RequestRefused: no page)."""
    from hms_dr.errors import RequestRefused
    from hms_dr.physical.recovery import check_recovery
    from hms_dr.physical.targets import parse_recovery_target

    staging = Path(scenario.sandbox.paths.staging_dir) / "pitr"
    before = sorted(scenario.root.rglob("*")) if scenario.root.exists() else []
    with pytest.raises(
        RequestRefused, match=r"recovery target time 2020-01-01T00:00:00Z is before base backup set \d{8}T\d{6}Z"
    ):
        check_recovery(
            primary_store,
            CLUSTER,
            parse_recovery_target("time", "2020-01-01T00:00:00Z"),
            decryption_key=restore_key,
            staging_dir=staging,
        )
    plan = check_recovery(
        primary_store,
        CLUSTER,
        parse_recovery_target("time", scenario.before_delete),
        decryption_key=restore_key,
        staging_dir=staging,
    )
    assert plan["wal_files"] >= 1 and plan["base_plain_bytes"] > 0
    assert (sorted(scenario.root.rglob("*")) if scenario.root.exists() else []) == before  # no data directory was made


def test_a_run_without_a_reason_is_refused_before_it_starts(scenario: Scenario, dag_runner: Any) -> None:
    conf = {"target_type": "latest", "data_directory": str(scenario.root / "no-reason" / "data")}
    outcome = dag_runner.run(DAG_ID, name="pitr", policy={"cluster.name": CLUSTER}, conf=conf)
    assert outcome.returncode != 0 and outcome.run_id is None
    assert "Invalid input for param reason: No value passed" in outcome.output
    assert not (scenario.root / "no-reason").exists()
