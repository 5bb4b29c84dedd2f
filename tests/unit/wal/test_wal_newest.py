"""One "newest WAL": the WAL DAG's RPO, the status page and the freshness check all take the
newest WAL set's archived_at from its manifest, never the listing's mtime."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import key_for
from hms_dr.freshness import read_newest_sets
from hms_dr.manifest import BackupKind, Payload
from hms_dr.policy import FreshnessKind
from hms_dr.publish import publish_set
from hms_dr.status import collect_status
from hms_dr.store import open_store
from hms_dr.wal.newest import NEWEST_SETS_READ, newest_stored_wal
from hms_dr.wal.rpo import measure_rpo

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CLUSTER = "hms-primary"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ship(store: Any, root: Path, name: str, archived_at: datetime, stored_at: datetime) -> None:
    """A complete WAL set archived at ``archived_at`` whose objects were written at ``stored_at``."""
    stored = store.put(key_for(CLUSTER, BackupKind.WAL, name, "wal.zst"), io.BytesIO(b"w"))
    publish_set(
        store,
        kind=BackupKind.WAL,
        cluster=CLUSTER,
        backup_set_id=name,
        started_at=archived_at,
        finished_at=archived_at + timedelta(seconds=1),
        payloads=[Payload("wal.zst", stored.size_bytes, stored.sha256, "test")],
        extra={"wal_file": name, "archived_at": _iso(archived_at)},
    )
    for path in (root / CLUSTER / "wal" / name).iterdir():
        os.utime(path, (stored_at.timestamp(), stored_at.timestamp()))


@pytest.fixture()
def primary(tmp_path: Path) -> tuple[Any, Path]:
    return open_store(f"file://{tmp_path}"), tmp_path


def test_a_set_copied_later_is_as_old_as_its_archived_at_in_all_three_places(primary: tuple[Any, Path]) -> None:
    store, root = primary
    # Segment 2 was archived 40 minutes ago but copied back into the store a minute ago (its mtime
    # is new); segment 1 was archived 50 minutes ago and stored then.
    ship(store, root, "000000010000000000000001", NOW - timedelta(minutes=50), NOW - timedelta(minutes=50))
    ship(store, root, "000000010000000000000002", NOW - timedelta(minutes=40), NOW - timedelta(minutes=1))

    newest = newest_stored_wal(store, CLUSTER)
    assert newest is not None and newest.name == "000000010000000000000002"
    assert newest.archived_at == NOW - timedelta(minutes=40)

    rpo = measure_rpo(newest, None, target_minutes=15, now=NOW)
    status = collect_status(store, None, CLUSTER, NOW)
    wal_row = next(row for row in status["kinds"] if row["kind"] == "wal")
    fresh = read_newest_sets(store, CLUSTER, {FreshnessKind.WAL: timedelta(minutes=15)})[FreshnessKind.WAL]

    assert rpo.store_age_s == 40 * 60
    assert status["rpo_s"] == 40 * 60 and wal_row["age_s"] == 40 * 60
    assert wal_row["backup_set_id"] == rpo.newest_stored_wal == fresh.backup_set_id == newest.name
    assert fresh.finished_at == newest.archived_at
    assert wal_row["count"] == 2


def test_the_newest_archived_at_wins_among_the_newest_names_and_no_older_manifest_is_read(
    primary: tuple[Any, Path],
) -> None:
    store, root = primary
    names = [f"0000000100000000000000{i:02X}" for i in range(1, NEWEST_SETS_READ + 4)]
    for i, name in enumerate(names):
        ship(store, root, name, NOW - timedelta(minutes=100 - i), NOW - timedelta(minutes=100 - i))
    # A .history file sorts after the segments but was archived before the newest of them.
    ship(store, root, "00000002.history", NOW - timedelta(minutes=95), NOW)
    # The oldest set's manifest is unreadable: it is past the newest few, so it is never read.
    (root / CLUSTER / "wal" / names[0] / "manifest.json").write_bytes(b"not json")
    newest = newest_stored_wal(store, CLUSTER)
    assert newest is not None and newest.name == names[-1]
    assert newest.archived_at == NOW - timedelta(minutes=100 - len(names) + 1)


def test_no_complete_wal_set_is_none(primary: tuple[Any, Path]) -> None:
    store, _ = primary
    store.put_bytes(key_for(CLUSTER, BackupKind.WAL, "000000010000000000000001", "wal.zst"), b"w")  # no manifest yet
    assert newest_stored_wal(store, CLUSTER) is None
