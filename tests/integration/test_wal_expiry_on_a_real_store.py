"""WAL expiry on a real file:// store: 20 days of WAL sets (one a day, real filesystem mtimes) and
two base backup sets. Only what is both outside the 7-day window and before the oldest base
backup goes, manifest first; what a retained base backup needs stays byte-identical; a stale
orphan folder goes. The clock is fixed; the store and its listing are real."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hms_dr.catalog import key_for
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload
from hms_dr.publish import publish_set
from hms_dr.retention import RetentionTiers, expire_by_tiers
from hms_dr.store import Store, open_store
from hms_dr.wal.listing import read_wal_sets

pytestmark = pytest.mark.integration

CLUSTER = "hms-primary"
NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
TIERS = RetentionTiers(wal_days=7, orphan_max_age=timedelta(hours=24))


def segment(number: int) -> str:
    return f"00000001{0:08X}{number:08X}"


def age_folder(root: Path, kind: BackupKind, set_id: str, when: datetime) -> None:
    for path in (root / key_for(CLUSTER, kind, set_id)).iterdir():
        os.utime(path, (when.timestamp(), when.timestamp()))


def put_set(
    store: Store, root: Path, kind: BackupKind, set_id: str, when: datetime, extra: dict, *, manifest: bool = True
) -> None:
    data = hashlib.sha256(set_id.encode()).digest() * 64
    stored = store.put_bytes(key_for(CLUSTER, kind, set_id, f"{set_id}.zst.gpg"), data)
    if manifest:
        payload = Payload(name=f"{set_id}.zst.gpg", size_bytes=stored.size_bytes, sha256=stored.sha256, format="wal")
        publish_set(
            store,
            kind=kind,
            cluster=CLUSTER,
            backup_set_id=set_id,
            started_at=when,
            finished_at=when,
            payloads=[payload],
            extra=extra,
        )
    age_folder(root, kind, set_id, when)


def base_extra(start: int) -> dict:
    return {"base_backup": {"start_wal_file": segment(start), "stop_wal_file": segment(start)}}


@pytest.fixture()
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    return root


def test_expiry_removes_only_unneeded_old_wal(store_root: Path) -> None:
    store = open_store(store_root.as_uri())
    for n in range(21):  # segment n archived 20 - n days ago
        when = NOW - timedelta(days=20 - n)
        put_set(
            store,
            store_root,
            BackupKind.WAL,
            segment(n),
            when,
            {"wal_file": segment(n), "archived_at": when.isoformat()},
        )
    put_set(store, store_root, BackupKind.WAL, segment(99), NOW - timedelta(days=3), {}, manifest=False)  # stale orphan
    for set_id, start, days in (("20260214T010000Z", 5, 15), ("20260221T010000Z", 12, 8)):
        when = NOW - timedelta(days=days)
        put_set(store, store_root, BackupKind.BASE, set_id, when, base_extra(start))
    kept_before = {
        o.key: store.get_bytes(o.key)
        for o in store.list(f"{CLUSTER}/wal/")
        if segment(5) <= o.key.split("/")[2] <= segment(20)
    }

    outcome = expire_by_tiers(store, CLUSTER, TIERS, NOW, offsite=False, kinds=(BackupKind.WAL,))["wal"]

    expected_gone = {segment(n) for n in range(5)} | {segment(99)}
    assert set(outcome.expired) == expected_gone
    remaining = {s.name for s in read_wal_sets(store, CLUSTER)}
    assert remaining == {segment(n) for n in range(21)} - expected_gone
    assert all(s.complete for s in read_wal_sets(store, CLUSTER))  # no half-deleted set left behind
    assert {k: store.get_bytes(k) for k in kept_before} == kept_before
    assert store.exists(
        key_for(CLUSTER, BackupKind.WAL, segment(5), MANIFEST_NAME)
    )  # where the oldest base backup starts


def test_a_base_backup_manifest_without_its_wal_range_stops_the_expiry(store_root: Path) -> None:
    store = open_store(store_root.as_uri())
    old = NOW - timedelta(days=30)
    put_set(store, store_root, BackupKind.WAL, segment(1), old, {})
    put_set(store, store_root, BackupKind.BASE, "20260101T010000Z", old, {"base_backup": {"stop_wal_file": segment(2)}})
    with pytest.raises(ManifestInvalid, match="lacks its WAL start"):
        expire_by_tiers(store, CLUSTER, TIERS, NOW, offsite=False, kinds=(BackupKind.WAL,))
    assert store.exists(key_for(CLUSTER, BackupKind.WAL, segment(1), MANIFEST_NAME))
