"""Retention on a real file:// store: sets older than the window lose their manifest first and
then their payloads, every set inside the window and the newest set stay byte-identical, a
stale orphan folder goes and a fresh one stays. Only the clock is fixed; the store, its
directory pruning and its filesystem mtimes are real."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import key_for, list_catalog
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload, new_backup_set_id
from hms_dr.publish import publish_set
from hms_dr.retention import RetentionRule, apply_retention, plan_retention
from hms_dr.store import Store, open_store

pytestmark = pytest.mark.integration

CLUSTER = "hms-primary"
NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
RULE = RetentionRule(max_age=timedelta(days=30), orphan_max_age=timedelta(hours=24))
# Ages of the complete logical sets, spread over 60 days; 30 days exactly is still inside the window.
SET_AGES = [
    timedelta(hours=20),
    timedelta(days=1, hours=20),
    timedelta(days=7),
    timedelta(days=29, hours=23),
    timedelta(days=30),
    timedelta(days=30, minutes=1),
    timedelta(days=31),
    timedelta(days=45),
    timedelta(days=60),
]


@dataclass(frozen=True)
class HandMadeSet:
    backup_set_id: str
    finished_at: datetime
    keys: tuple[str, ...]  # payload keys, then the manifest key


def make_store(root: Path) -> Store:
    root.mkdir(mode=0o700)
    return open_store(root.as_uri())


def put_payload(store: Store, kind: BackupKind, backup_set_id: str, name: str, data: bytes) -> Payload:
    stored = store.put_bytes(key_for(CLUSTER, kind, backup_set_id, name), data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    return Payload(name=name, size_bytes=stored.size_bytes, sha256=stored.sha256, format="pg_dump_custom")


def make_set(store: Store, finished_at: datetime, *, kind: BackupKind = BackupKind.LOGICAL) -> HandMadeSet:
    """A complete set: two payloads (one sorting before manifest.json, one after), then its manifest."""
    backup_set_id = new_backup_set_id(finished_at - timedelta(minutes=10))
    payloads = [
        put_payload(store, kind, backup_set_id, "dump.pgdump.gpg", os.urandom(4096 + len(store.list()) * 17)),
        put_payload(store, kind, backup_set_id, "toc.dat.gpg", os.urandom(512)),
    ]
    manifest_key = publish_set(
        store,
        kind=kind,
        cluster=CLUSTER,
        backup_set_id=backup_set_id,
        started_at=finished_at - timedelta(minutes=10),
        finished_at=finished_at,
        payloads=payloads,
        extra={"baselines": {"tables": {}, "views": {}}},
    )
    assert manifest_key == key_for(CLUSTER, kind, backup_set_id, MANIFEST_NAME)
    return HandMadeSet(
        backup_set_id,
        finished_at,
        (*tuple(key_for(CLUSTER, kind, backup_set_id, p.name) for p in payloads), manifest_key),
    )


def make_orphan(store: Store, backup_set_id: str, file_ages: list[timedelta]) -> tuple[str, ...]:
    """Payloads with no manifest (an interrupted run), their mtimes set to NOW - age."""
    keys = []
    root = store.features.local_path
    assert root is not None
    for index, age in enumerate(file_ages):
        key = key_for(CLUSTER, BackupKind.LOGICAL, backup_set_id, f"part-{index}.pgdump.gpg")
        store.put_bytes(key, os.urandom(1024))
        moment = (NOW - age).timestamp()
        os.utime(root / key, (moment, moment))
        keys.append(key)
    return tuple(keys)


def snapshot_bytes(store: Store) -> dict[str, bytes]:
    return {obj.key: store.get_bytes(obj.key) for obj in store.list()}


def folder_of(key: str) -> str:
    return key.rsplit("/", 1)[0]


def plan_and_apply(store: Store, now: datetime) -> tuple[Any, list[str]]:
    plan = plan_retention(list_catalog(store, CLUSTER, BackupKind.LOGICAL), BackupKind.LOGICAL, RULE, now)
    return plan, apply_retention(plan, store, CLUSTER)


def test_expired_sets_and_stale_orphans_are_gone_and_everything_else_is_untouched(tmp_path: Path) -> None:
    store = make_store(tmp_path / "nas")
    sets = [make_set(store, NOW - age) for age in SET_AGES]
    other_kind = make_set(store, NOW - timedelta(days=60), kind=BackupKind.SCHEMA)
    stale_orphan = make_orphan(
        store, new_backup_set_id(NOW - timedelta(days=2)), [timedelta(hours=48), timedelta(hours=25)]
    )
    fresh_orphan = make_orphan(store, new_backup_set_id(NOW - timedelta(hours=1)), [timedelta(hours=1)])

    expired = [s for s in sets if NOW - s.finished_at > RULE.max_age]
    survivors = [s for s in sets if NOW - s.finished_at <= RULE.max_age]
    assert len(expired) == 4 and len(survivors) == 5  # the table above, as the rule reads it
    before = snapshot_bytes(store)

    plan, deleted = plan_and_apply(store, NOW)

    assert {e.backup_set_id for e in plan.expire if e.complete} == {s.backup_set_id for s in expired}
    assert [e.backup_set_id for e in plan.expire if not e.complete] == [stale_orphan[0].split("/")[2]]
    expected_deleted = {key for s in expired for key in s.keys} | set(stale_orphan)
    assert sorted(deleted) == sorted(expected_deleted)
    assert len(deleted) == len(set(deleted))
    for s in expired:
        manifest_key = s.keys[-1]
        # The manifest goes first: a crash between the deletes leaves an orphan, never a set
        # that looks complete but has lost a payload.
        assert all(deleted.index(manifest_key) < deleted.index(payload) for payload in s.keys[:-1]), deleted

    root = store.features.local_path
    assert root is not None
    after = snapshot_bytes(store)
    assert set(after) == set(before) - expected_deleted
    assert all(after[key] == before[key] for key in after)  # survivors byte-identical
    for key in expected_deleted:
        assert not (root / key).exists()
        assert not (root / folder_of(key)).exists()  # the emptied set folder was pruned too
    for s in survivors:
        assert all(key in after for key in s.keys)
    assert all(key in after for key in other_kind.keys)  # a logical plan never touches the schema sets
    assert all(key in after for key in fresh_orphan)

    listing = list_catalog(store, CLUSTER, BackupKind.LOGICAL)
    assert [s.backup_set_id for s in listing.sets] == [
        s.backup_set_id for s in sorted(survivors, key=lambda s: s.finished_at)
    ]
    assert [o.keys for o in listing.orphans] == [fresh_orphan]

    second_plan, second_deleted = plan_and_apply(store, NOW)
    assert second_plan.expire == ()
    assert second_deleted == []
    assert snapshot_bytes(store) == after


def test_newest_set_survives_when_every_set_is_older_than_the_window(tmp_path: Path) -> None:
    store = make_store(tmp_path / "nas")
    sets = [make_set(store, NOW - timedelta(days=days)) for days in (31, 40, 50, 60)]
    newest = sets[0]
    newest_bytes = {key: store.get_bytes(key) for key in newest.keys}

    plan, deleted = plan_and_apply(store, NOW)

    assert plan.keep == (newest.backup_set_id,)
    assert "newest" in plan.reasons[newest.backup_set_id]
    assert sorted(deleted) == sorted(key for s in sets[1:] for key in s.keys)
    assert {obj.key: store.get_bytes(obj.key) for obj in store.list()} == newest_bytes
    assert [s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.LOGICAL).sets] == [newest.backup_set_id]

    # A year later, with still no newer backup, the last set is still there.
    later_plan, later_deleted = plan_and_apply(store, NOW + timedelta(days=365))
    assert later_plan.expire == ()
    assert later_deleted == []
    assert {obj.key: store.get_bytes(obj.key) for obj in store.list()} == newest_bytes


def make_directory_set(store: Store, finished_at: datetime) -> HandMadeSet:
    """A directory-format set as the daily backup writes it: one payload per file of the dump."""
    backup_set_id = new_backup_set_id(finished_at - timedelta(minutes=10))
    names = ["dump.dir.toc.dat.zst.gpg", "dump.dir.3001.dat.zst.gpg", "dump.dir.3002.dat.zst.gpg"]
    names.append("dump.dir.blob_16385.dat.zst.gpg")
    payloads = [put_payload(store, BackupKind.LOGICAL, backup_set_id, name, os.urandom(700)) for name in names]
    manifest_key = publish_set(
        store,
        kind=BackupKind.LOGICAL,
        cluster=CLUSTER,
        backup_set_id=backup_set_id,
        started_at=finished_at - timedelta(minutes=10),
        finished_at=finished_at,
        payloads=payloads,
        extra={"baselines": {"tables": {}, "views": {}}, "archive_format": "directory"},
    )
    keys = tuple(key_for(CLUSTER, BackupKind.LOGICAL, backup_set_id, p.name) for p in payloads)
    return HandMadeSet(backup_set_id, finished_at, (*keys, manifest_key))


def test_a_directory_format_set_is_kept_or_expired_whole(tmp_path: Path) -> None:
    store = make_store(tmp_path / "nas")
    old = make_directory_set(store, NOW - timedelta(days=45))
    kept = make_directory_set(store, NOW - timedelta(days=2))
    custom = make_set(store, NOW - timedelta(days=1))

    plan, deleted = plan_and_apply(store, NOW)

    assert [(e.backup_set_id, e.complete) for e in plan.expire] == [(old.backup_set_id, True)]
    assert deleted[0] == old.keys[-1] and sorted(deleted) == sorted(old.keys)  # manifest first, then every file
    remaining = {obj.key for obj in store.list()}
    assert remaining == set(kept.keys) | set(custom.keys)
    assert [s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.LOGICAL).sets] == [
        kept.backup_set_id,
        custom.backup_set_id,
    ]
