"""hms_weekly_base_backup through Airflow on the sandbox: one run publishes a complete, verified
base backup set, announces it on hms://backups/base, keeps only the policy's newest N, and
leaks no secret into the task logs."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from hms_dr.catalog import list_catalog
from hms_dr.manifest import BackupKind

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.pg_majors(15, 18)]

DAG_ID = "hms_weekly_base_backup"
CLUSTER = "hms-weekly-drill"  # a cluster name of its own: only this module's sets are counted


@pytest.fixture(scope="module")
def runs(dag_runner: Any) -> list[Any]:
    """Two full runs with retention keep 1: the second must expire the first. Incrementals off on
    both majors (the 18 sandbox's policy turns them on): chains are test_incremental_base_backup_dag's."""
    outcomes = []
    policy = {"cluster.name": CLUSTER, "retention.base_backups_keep": 1, "base_backup.incremental": False}
    for _ in range(2):
        outcome = dag_runner.run(DAG_ID, name="weekly", policy=policy)
        assert outcome.state == "success", outcome.output[-6000:]
        outcomes.append(outcome)
    return outcomes


def test_each_run_backs_up_then_applies_retention(runs: list[Any]) -> None:
    for outcome in runs:
        assert outcome.task_states == {"back_up_cluster": "success", "expire_old_base_backups": "success"}


def test_the_newest_set_is_complete_and_describes_its_wal(runs: list[Any], primary_store: Any, sandbox: Any) -> None:
    import psycopg

    sets = list_catalog(primary_store, CLUSTER, BackupKind.BASE).sets
    assert len(sets) == 1, [s.backup_set_id for s in sets]  # keep 1: the first run's set expired
    body = sets[0].manifest.body
    base = body["base_backup"]
    with psycopg.connect(sandbox.superuser_dsn()) as conn:
        system_identifier = str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])  # type: ignore[index]
    assert base["system_identifier"] == system_identifier
    assert base["timeline"] >= 1 and base["start_wal_file"] <= base["stop_wal_file"]
    assert base["data_checksums"] is True and base["method"] == "streamed"
    assert base["verified_by"].startswith("hms-dr streamed check")
    names = {p.name for p in sets[0].manifest.payloads}
    assert {"base.tar.zst.gpg", "pg_wal.tar.zst.gpg", "backup_manifest.zst.gpg"} <= names


def test_the_set_is_announced_as_an_asset_event(runs: list[Any], primary_store: Any, dag_runner: Any) -> None:
    newest = list_catalog(primary_store, CLUSTER, BackupKind.BASE).sets[-1]
    with sqlite3.connect(dag_runner.db_path) as db:
        row = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? ORDER BY e.id DESC LIMIT 1",
            ("hms://backups/base",),
        ).fetchone()
    assert row is not None
    event = json.loads(row[0])
    assert event["backup_set_id"] == newest.backup_set_id
    assert event["stop_lsn"] == newest.manifest.body["base_backup"]["stop_lsn"]
    # base_backup.incremental is off (the default): full sets, said so in the event and the manifest.
    assert (event["backup_type"], event["parent_backup_set_id"], event["chain"]) == ("full", None, [])
    assert newest.manifest.body["base_backup"]["backup_type"] == "full"


@pytest.mark.pg_majors(15)  # 18 takes incrementals
def test_an_incremental_asked_of_the_15_sandbox_is_refused_in_one_line_before_anything_is_copied(
    runs: list[Any], dag_runner: Any, primary_store: Any
) -> None:
    before = [s.backup_set_id for s in list_catalog(primary_store, CLUSTER, BackupKind.BASE).sets]
    outcome = dag_runner.run(
        DAG_ID, name="weekly-incremental", policy={"cluster.name": CLUSTER}, conf={"backup_type": "incremental"}
    )
    assert outcome.state == "failed", outcome.output[-4000:]
    assert outcome.task_states["back_up_cluster"] == "failed" and outcome.task_tries["back_up_cluster"] == 1
    assert "PreflightFailed: backup_type incremental asks for incremental base backups, but" in outcome.output
    assert "runs PostgreSQL 15." in outcome.output and "pg_basebackup (" not in outcome.output
    listing = list_catalog(primary_store, CLUSTER, BackupKind.BASE)
    assert [s.backup_set_id for s in listing.sets] == before and listing.orphans == ()


def test_no_secret_reaches_the_task_logs(runs: list[Any], sandbox: Any) -> None:
    for outcome in runs:
        assert "pg_basebackup" in outcome.output  # the logs were captured
        for secret in sandbox.secrets.values():
            assert secret not in outcome.output
