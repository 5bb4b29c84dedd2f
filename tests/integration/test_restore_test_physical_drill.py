"""hms_restore_test in mode "both" on the sandbox: the daily set is restored with pg_restore AND
the newest base backup is recovered to the daily set's snapshot LSN from the stored WAL; both
pass the same checks against the same baselines, the recovered cluster passes pg_checksums, and
both scratch copies are gone afterwards. pg_checksums itself is proven to catch a damaged page."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from archiving import Archiver

from hms_dr.catalog import list_catalog
from hms_dr.errors import DataCorruption
from hms_dr.manifest import BackupKind
from hms_dr.physical import drill
from hms_sandbox.cluster import LocalCluster, free_port, prepare_server_dir

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.pg_majors(15, 18)]

DAG_ID = "hms_restore_test"
CLUSTER = "hms-drill"  # a cluster name of its own: only this module's sets are in its folders
POLICY = {"cluster.name": CLUSTER}


def ship_wal_through(dag_runner: Any, sandbox: Any) -> None:
    """Complete the current WAL segment, wait until the archiver has it, then ship the spool."""
    Archiver.of_sandbox(sandbox).switch_and_wait()
    outcome = dag_runner.run("hms_wal_archive", name="drill", policy=POLICY)
    assert outcome.task_states["ship_spool"] == "success", outcome.output[-4000:]


@pytest.fixture(scope="module")
def drill_run(dag_runner: Any, sandbox: Any) -> Any:
    for dag_id in ("hms_weekly_base_backup", "hms_daily_logical_backup"):
        outcome = dag_runner.run(dag_id, name="drill", policy=POLICY)
        assert outcome.state == "success", outcome.output[-6000:]
    ship_wal_through(dag_runner, sandbox)  # the WAL up to the daily set's snapshot is in the store
    outcome = dag_runner.run(DAG_ID, name="drill", policy=POLICY, conf={"mode": "both"})
    assert outcome.state == "success", outcome.output[-8000:]
    return outcome


def test_both_restores_ran_and_every_task_succeeded(drill_run: Any) -> None:
    assert drill_run.task_states == {
        "choose_backup_set": "success",
        "restore_into_scratch": "success",
        "check_against_baselines": "success",
        "drop_scratch_database": "success",
        "recover_for_drill": "success",
        "check_recovered_cluster": "success",
        "verify_checksums_offline": "success",
        "remove_recovered_cluster": "success",
    }


def test_the_recovered_cluster_matches_the_daily_sets_baselines(
    drill_run: Any, dag_runner: Any, primary_store: Any
) -> None:
    daily = list_catalog(primary_store, CLUSTER, BackupKind.LOGICAL).sets[-1]
    base = list_catalog(primary_store, CLUSTER, BackupKind.BASE).sets[-1]
    physical = dag_runner.returned(DAG_ID, drill_run.run_id, "check_recovered_cluster")
    assert physical["passed"] and physical["mode"] == "physical" and physical["failed"] == []
    assert physical["backup_set_id"] == daily.backup_set_id and physical["base_backup_set_id"] == base.backup_set_id
    assert physical["target_lsn"] == daily.manifest.body["snapshot"]["wal_lsn"] and physical["timeline"] >= 2
    tables = set(daily.manifest.baselines["tables"])
    counted = {c["target"] for c in physical["checks"] if c["check"] == "row_count" and c["passed"]}
    assert counted == tables  # every table of the set has its exact baseline row count on the recovered copy
    proven = {c["target"] for c in physical["checks"] if c["check"] == "table_content" and c["passed"]}
    assert proven == tables  # ... and every value of every table, by its content digest
    assert [c["passed"] for c in physical["checks"] if c["check"] == "large_objects"] == [True]
    reports = [
        s
        for s in list_catalog(primary_store, CLUSTER, BackupKind.RESTORE_TEST).sets
        if s.manifest.body["tested_set"]["backup_set_id"] == daily.backup_set_id
    ]
    assert sorted(s.manifest.body["mode"] for s in reports) == ["logical", "physical"]
    assert all(s.manifest.body["passed"] for s in reports)


def test_pg_checksums_read_every_block_of_the_recovered_cluster(drill_run: Any, dag_runner: Any) -> None:
    checksums = dag_runner.returned(DAG_ID, drill_run.run_id, "verify_checksums_offline")
    assert checksums["checksums_enabled"] and checksums["bad_checksums"] == 0 and checksums["blocks_scanned"] > 100


def test_the_recovered_cluster_is_removed(drill_run: Any, dag_runner: Any) -> None:
    plan = dag_runner.returned(DAG_ID, drill_run.run_id, "choose_backup_set")
    assert not Path(plan["physical"]["data_dir"]).exists()
    assert not Path(plan["physical"]["socket_dir"]).exists()


def test_pg_checksums_names_a_damaged_page(sandbox: Any) -> None:
    # Under the sandbox, not pytest's tmp_path: the server user must be able to walk to it.
    root = Path(tempfile.mkdtemp(prefix="damaged-", dir=sandbox.state_dir))
    prepare_server_dir(root, 0o755)
    cluster = LocalCluster(
        data_dir=root / "data", port=free_port(), log_file=root / "server.log", major=sandbox.pg_major
    )
    superuser_password = secrets.token_hex(16)
    cluster.init(superuser_password=superuser_password, data_checksums=True)
    cluster.start()
    with psycopg.connect(cluster.dsn("postgres", superuser_password), autocommit=True) as conn:
        conn.execute("CREATE TABLE ward (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO ward SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g")
        conn.execute("CHECKPOINT")
        relation = conn.execute("SELECT pg_relation_filepath('ward')").fetchone()[0]  # type: ignore[index]
    cluster.stop()
    page = cluster.data_dir / relation
    data = bytearray(page.read_bytes())
    data[8192 + 4000] ^= 0xFF  # one byte in the middle of the second page
    page.write_bytes(bytes(data))
    recovered = {
        "data_dir": str(cluster.data_dir),
        "port": cluster.port,
        "socket_dir": str(cluster.socket_directory),
        "log_file": str(root / "log" / "x.log"),
    }
    try:
        with pytest.raises(DataCorruption, match=rf"1 bad block\(s\).*{relation} block 1"):
            drill.check_checksums_offline(recovered)
    finally:
        shutil.rmtree(root, ignore_errors=True)
