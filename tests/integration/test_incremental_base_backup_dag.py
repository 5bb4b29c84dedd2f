"""hms_weekly_base_backup through Airflow on a PostgreSQL 18 sandbox, whose policy turns incremental
base backups on: the first run takes a full set, the next (after ~1% of a table changed) an
incremental chained to it, and the asset event and the task's XCom say which type and which
parent; a run asked for backup_type full starts a new chain."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import yaml
from conftest import DagRunner

from hms_dr.catalog import list_catalog
from hms_dr.manifest import BackupKind
from hms_dr.store import open_store

# The worker's PostgreSQL 18 sandbox (tests/integration/conftest.py): its policy turns incrementals on.
pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.pg_majors(18)]

DAG_ID = "hms_weekly_base_backup"
CLUSTER = "hms-incremental-drill"  # a cluster name of its own


def events(runner: DagRunner) -> list[dict[str, Any]]:
    with sqlite3.connect(runner.db_path) as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? ORDER BY e.id",
            ("hms://backups/base",),
        ).fetchall()
    return [json.loads(row[0]) for row in rows]


def test_a_full_then_an_incremental_then_a_forced_full(sandbox: Any, dag_runner: DagRunner) -> None:
    import psycopg

    policy = yaml.safe_load(open(sandbox.paths.policy_file).read())  # noqa: SIM115
    assert policy["base_backup"]["incremental"] is True  # the 18 sandbox's own policy
    store = open_store(f"s3://{sandbox.primary_bucket}", s3_client=sandbox.s3_client())
    variant = {"cluster.name": CLUSTER}

    first = dag_runner.run(DAG_ID, name="incr-1", policy=variant)
    assert first.state == "success", first.output[-6000:]
    with psycopg.connect(sandbox.superuser_dsn(sandbox.database), autocommit=True) as conn:
        conn.execute("UPDATE patients SET last_name = last_name WHERE id % 100 = 0")
    second = dag_runner.run(DAG_ID, name="incr-2", policy=variant)
    assert second.state == "success", second.output[-6000:]
    third = dag_runner.run(DAG_ID, name="incr-3", policy=variant, conf={"backup_type": "full"})
    assert third.state == "success", third.output[-6000:]

    sets = list_catalog(store, CLUSTER, BackupKind.BASE).sets
    assert [s.manifest.body["base_backup"]["backup_type"] for s in sets] == ["full", "incremental", "full"]
    full, incremental, _ = sets
    assert incremental.manifest.body["base_backup"]["chain"] == [full.backup_set_id]
    assert incremental.size_bytes < full.size_bytes / 4, (incremental.size_bytes, full.size_bytes)
    extras = [e for e in events(dag_runner) if e.get("cluster") == CLUSTER]
    assert [(e["backup_type"], e["parent_backup_set_id"]) for e in extras] == [
        ("full", None),
        ("incremental", full.backup_set_id),
        ("full", None),
    ]
    returned = dag_runner.returned(DAG_ID, second.run_id, "back_up_cluster")
    assert returned["backup_type"] == "incremental" and returned["chain"] == [full.backup_set_id]
    assert "incremental set" in second.output and "of its chain's full set" in second.output
    print(f"\nDAG runs: full {full.size_bytes} B stored, incremental {incremental.size_bytes} B stored")
