"""hms_wal_archive killed with SIGKILL in the middle of shipping, then run again: every segment
ends up stored exactly once (one payload, one manifest, the original bytes), and nothing the kill
left half-written is ever taken as a complete set in between."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from archiving import Archiver, switch_wal

from hms_dr.catalog import find_set, key_for
from hms_dr.manifest import MANIFEST_NAME, BackupKind
from hms_dr.restore import fetch_for_restore
from hms_dr.wal.listing import read_wal_sets

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_wal_archive"
CLUSTER = "hms-kill-drill"  # a cluster name of its own: only this test's sets are in its folder
SEGMENTS = 12
VENV_BIN = Path(sys.executable).parent


def force_full_segments(sandbox: Any, count: int) -> list[str]:
    """Fill ``count`` segments with poorly compressible rows, so that each upload takes a while."""
    names = []
    with psycopg.connect(sandbox.superuser_dsn("hospital_management"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_kill_probe (id bigserial PRIMARY KEY, note text)")
        for _ in range(count):
            conn.execute(
                "INSERT INTO wal_kill_probe (note) SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, 120000)"
            )
            names.append(switch_wal(conn))
    return names


def complete_names(store: Any) -> set[str]:
    return {s.name for s in read_wal_sets(store, CLUSTER) if s.complete}


def test_killed_shipping_then_rerun_stores_every_segment_exactly_once(
    sandbox: Any, dag_runner: Any, primary_store: Any, restore_key: Any, tmp_path: Path
) -> None:
    spool = Path(sandbox.paths.spool_dir)
    names = force_full_segments(sandbox, SEGMENTS)
    Archiver.of_sandbox(sandbox).wait_spooled(names)
    originals = {n: hashlib.sha256((spool / n).read_bytes()).hexdigest() for n in names}

    env = {**dag_runner.env, "HMS_DR_POLICY": str(dag_runner.policy_variant("kill-drill", {"cluster.name": CLUSTER}))}
    run = subprocess.Popen(
        [str(VENV_BIN / "airflow"), "dags", "test", DAG_ID],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not complete_names(primary_store) & set(names):
            assert run.poll() is None, "the run ended before shipping anything"
            assert time.monotonic() < deadline, "nothing was shipped within 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()

    after_kill = complete_names(primary_store) & set(names)
    assert after_kill != set(names), "the kill came after shipping had finished: the test proved nothing"
    for name in after_kill:  # what looks complete after the kill IS complete: the right bytes
        fetched = fetch_for_restore(
            primary_store, find_set(primary_store, CLUSTER, BackupKind.WAL, name), restore_key, tmp_path / name
        )
        assert hashlib.sha256(fetched.path.read_bytes()).hexdigest() == originals[name]

    outcome = dag_runner.run(DAG_ID, name="kill-drill", policy={"cluster.name": CLUSTER})
    assert outcome.state == "success", outcome.output[-6000:]

    for name in names:
        folder = key_for(CLUSTER, BackupKind.WAL, name)
        keys = sorted(o.key for o in primary_store.list(folder))
        assert keys == [folder + name + ".zst.gpg", folder + MANIFEST_NAME], f"{name}: {keys}"
        backup_set = find_set(primary_store, CLUSTER, BackupKind.WAL, name)
        assert backup_set.manifest.payloads[0].plain_sha256 == originals[name]
        assert not (spool / name).exists()
    fetched = fetch_for_restore(
        primary_store, find_set(primary_store, CLUSTER, BackupKind.WAL, names[-1]), restore_key, tmp_path / "last"
    )
    assert hashlib.sha256(fetched.path.read_bytes()).hexdigest() == originals[names[-1]]
