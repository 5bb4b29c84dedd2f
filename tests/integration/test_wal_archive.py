"""hms_wal_archive, run through Airflow on the sandbox: forced WAL segments become encrypted sets
that decrypt to the original bytes, leave the spool, are never shipped twice, are never
overwritten by a different file of the same name, and the RPO over target fails the run."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from archiving import Archiver, switch_wal

from hms_dr.catalog import find_set, key_for, list_catalog
from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.restore import fetch_for_restore
from hms_dr.wal.names import parse_wal_name

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_wal_archive"
CLUSTER = "hms-primary"
TASKS = ("ship_spool", "check_archiver", "measure_rpo", "expire_wal")


def force_segments(sandbox: Any, count: int) -> list[str]:
    """Write, then switch WAL, ``count`` times as superuser; the names of the completed segments."""
    import psycopg

    names = []
    with psycopg.connect(sandbox.superuser_dsn("hospital_management"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS wal_archive_probe (id serial PRIMARY KEY, note text, at timestamptz DEFAULT now())"
        )
        for _i in range(count):
            conn.execute("INSERT INTO wal_archive_probe (note) SELECT md5(g::text) FROM generate_series(1, 500) g")
            names.append(switch_wal(conn))
    return names


def spool_names(spool: Path) -> set[str]:
    return {p.name for p in spool.iterdir() if parse_wal_name(p.name) is not None}


@pytest.fixture(scope="module")
def spool(sandbox: Any) -> Path:
    return Path(sandbox.paths.spool_dir)


@pytest.fixture(scope="module")
def forced(sandbox: Any, spool: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    names = force_segments(sandbox, 3)
    Archiver.of_sandbox(sandbox).wait_spooled(names)
    return {name: (spool / name).read_bytes() for name in names}  # copies: shipping removes them


@pytest.fixture(scope="module")
def first_run(dag_runner: Any, forced: dict[str, bytes]) -> Any:
    started = time.monotonic()
    outcome = dag_runner.run(DAG_ID)
    outcome.seconds = time.monotonic() - started
    assert outcome.state == "success", outcome.output[-6000:]
    return outcome


@pytest.mark.pg_majors(15, 18)
def test_every_task_succeeded_once(first_run: Any) -> None:
    assert first_run.task_states == {task: "success" for task in TASKS}


@pytest.mark.pg_majors(15, 18)
def test_each_forced_segment_is_a_set_that_decrypts_to_the_original_bytes(
    first_run: Any, forced: dict[str, bytes], primary_store: Any, restore_key: Any, tmp_path: Path
) -> None:
    import hashlib

    for name, original in forced.items():
        backup_set = find_set(primary_store, CLUSTER, BackupKind.WAL, name)
        body = backup_set.manifest.body
        assert body["kind"] == "wal" and backup_set.backup_set_id == name
        assert (
            body["wal_file"] == name and body["timeline"] == 1 and body["plain_size_bytes"] == len(original) == 16 << 20
        )
        assert parse_utc(body["archived_at"]) <= backup_set.manifest.finished_at
        payload = backup_set.manifest.payloads[0]
        assert payload.name == f"{name}.zst.gpg"
        assert payload.plain_sha256 == hashlib.sha256(original).hexdigest()
        stored = primary_store.get_bytes(key_for(CLUSTER, BackupKind.WAL, name, payload.name))
        assert hashlib.sha256(stored).hexdigest() == payload.sha256 and len(stored) < len(original)
        fetched = fetch_for_restore(primary_store, backup_set, restore_key, tmp_path / name)
        assert fetched.path.read_bytes() == original


@pytest.mark.pg_majors(15, 18)
def test_the_catalog_lists_the_wal_sets_oldest_first(
    first_run: Any, forced: dict[str, bytes], primary_store: Any
) -> None:
    listing = list_catalog(primary_store, CLUSTER, BackupKind.WAL)
    ids = [s.backup_set_id for s in listing.sets]
    assert set(forced) <= set(ids)
    assert [n for n in ids if n in forced] == sorted(forced)
    assert listing.unreadable == () and listing.orphans == ()


@pytest.mark.pg_majors(15, 18)
def test_the_rpo_is_handed_on_as_an_asset_event_and_xcom(first_run: Any, dag_runner: Any) -> None:
    measured = dag_runner.returned(DAG_ID, first_run.run_id, "measure_rpo")
    assert measured["problem"] is None and 0 <= measured["store_age_s"] < 15 * 60
    with sqlite3.connect(dag_runner.db_path) as db:
        row = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? ORDER BY e.id DESC LIMIT 1",
            ("hms://backups/wal",),
        ).fetchone()
    assert row is not None, "no hms://backups/wal event"
    event = json.loads(row[0])
    assert (
        event["newest_stored_wal"] == measured["newest_stored_wal"] and event["store_age_s"] == measured["store_age_s"]
    )


@pytest.mark.pg_majors(15, 18)
def test_fresh_wal_is_kept_by_the_expiry(first_run: Any, forced: dict[str, bytes], dag_runner: Any) -> None:
    expiry = dag_runner.returned(DAG_ID, first_run.run_id, "expire_wal")
    assert expiry["expired"] == [] and expiry["kept"] >= len(forced)


@pytest.mark.pg_majors(15, 18)
def test_shipped_files_are_gone_from_the_spool(
    first_run: Any, forced: dict[str, bytes], spool: Path, dag_runner: Any
) -> None:
    shipped = dag_runner.returned(DAG_ID, first_run.run_id, "ship_spool")
    assert set(forced) <= set(shipped["shipped"])
    assert not set(shipped["shipped"]) & spool_names(spool)
    assert f"shipped {len(shipped['shipped'])} WAL file(s)" in first_run.output
    assert "MiB/s" in first_run.output


@pytest.mark.pg_majors(15, 18)
def test_rpo_figures_are_measured_and_handed_on(first_run: Any, dag_runner: Any) -> None:
    report = dag_runner.returned(DAG_ID, first_run.run_id, "measure_rpo")
    assert report["problem"] is None and report["target_minutes"] == 15
    assert 0 <= report["store_age_s"] < 15 * 60
    archiver = dag_runner.returned(DAG_ID, first_run.run_id, "check_archiver")
    assert archiver["archived_count"] >= 3 and archiver["last_archived_wal"]


def test_a_second_run_ships_nothing_already_stored(first_run: Any, dag_runner: Any, primary_store: Any) -> None:
    before = {o.key: o.modified_at for o in primary_store.list(f"{CLUSTER}/wal/")}
    stored_names = {k.split("/")[2] for k in before}
    outcome = dag_runner.run(DAG_ID)
    assert outcome.state == "success", outcome.output[-6000:]
    shipped = dag_runner.returned(DAG_ID, outcome.run_id, "ship_spool")
    # A segment archive_timeout closed in between may be new; nothing already stored is shipped again.
    assert not set(shipped["shipped"]) & stored_names
    after = {o.key: o.modified_at for o in primary_store.list(f"{CLUSTER}/wal/")}
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_different_file_with_a_stored_name_fails_the_run_and_is_not_overwritten(
    first_run: Any, forced: dict[str, bytes], dag_runner: Any, primary_store: Any, spool: Path
) -> None:
    name = sorted(forced)[0]
    folder = key_for(CLUSTER, BackupKind.WAL, name)
    before = {o.key: primary_store.get_bytes(o.key) for o in primary_store.list(folder)}
    impostor = spool / name
    impostor.write_bytes(b"\x00" * 4096 + forced[name][4096:])
    try:
        outcome = dag_runner.run(DAG_ID)
        assert outcome.state == "failed"
        assert outcome.task_states["ship_spool"] == "failed"
        assert outcome.task_states["measure_rpo"] == outcome.task_states["expire_wal"] == "upstream_failed"
        assert outcome.task_tries["ship_spool"] == 1  # an alarm, not retried
        assert f"WAL file {name} in the spool" in outcome.output and "not overwritten" in outcome.output
        assert {o.key: primary_store.get_bytes(o.key) for o in primary_store.list(folder)} == before
        assert impostor.exists()  # kept for the investigation
    finally:
        impostor.unlink(missing_ok=True)


def test_rpo_over_target_fails_the_run_with_one_line(sandbox: Any, dag_runner: Any, spool: Path) -> None:
    # Deterministic: a cluster name with an empty store, and every spool file archived "two hours ago".
    Archiver.of_sandbox(sandbox).wait_spooled(force_segments(sandbox, 1))
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    for name in spool_names(spool):
        os.utime(spool / name, (two_hours_ago, two_hours_ago))
    outcome = dag_runner.run(
        DAG_ID,
        name="rpo-drill",
        policy={"cluster.name": "hms-rpo-drill", "wal.remove_shipped_from_spool": False},
    )
    assert outcome.state == "failed", outcome.output[-6000:]
    assert outcome.task_states == {
        "ship_spool": "success",
        "check_archiver": "success",
        "measure_rpo": "failed",
        "expire_wal": "success",
    }
    lines = [line for line in outcome.output.splitlines() if "is over the 15-minute target" in line]
    assert lines, outcome.output[-4000:]
    assert "RPO 12" in lines[0] and "the newest WAL in the store" in lines[0]
    # freshly stored WAL is inside the 7-day window: the expiry keeps it and says why
    expiry = dag_runner.returned(DAG_ID, outcome.run_id, "expire_wal")
    assert expiry["expired"] == [] and expiry["kept"] >= 1
    assert f"{expiry['kept']} kept ({expiry['kept']}: inside the 7-day window)" in outcome.output
