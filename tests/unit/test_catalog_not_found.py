"""A set id the store does not hold: the error names the newest ids of that kind it does hold, so
the operator can pick one; an id typed into a run's params is the request's fault (no page),
while "latest" with no set at all is the system's. On a real file:// store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hms_dr.catalog import find_requested_set, find_set, key_for
from hms_dr.errors import NoBackupForTarget, RequestRefused, SetNotFound
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.publish import publish_set
from hms_dr.store import Store, open_store

CLUSTER = "hms-primary"
T0 = datetime(2026, 11, 1, 2, 0, 1, tzinfo=UTC)


def publish(store: Store, kind: BackupKind, finished_at: datetime) -> str:
    set_id = new_backup_set_id(finished_at)
    stored = store.put_bytes(key_for(CLUSTER, kind, set_id, "dump.pgdump.zst.gpg"), b"an encrypted dump")
    publish_set(
        store,
        kind=kind,
        cluster=CLUSTER,
        backup_set_id=set_id,
        started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at,
        payloads=[Payload("dump.pgdump.zst.gpg", stored.size_bytes, stored.sha256, "test")],
        extra={},
    )
    return set_id


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    return open_store(root.as_uri())


def test_a_missing_set_lists_the_ten_newest_complete_sets_of_its_kind(store: Store) -> None:
    daily = [publish(store, BackupKind.LOGICAL, T0 + timedelta(days=d)) for d in range(12)]
    schema = publish(store, BackupKind.SCHEMA, T0 + timedelta(days=20))  # another kind: never offered
    interrupted = new_backup_set_id(T0 + timedelta(days=30))  # newer, but no manifest: not a set
    store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, interrupted, "dump.pgdump.zst.gpg"), b"half a dump")

    with pytest.raises(SetNotFound) as caught:
        find_set(store, CLUSTER, BackupKind.LOGICAL, "20261124T020001Z")
    newest = list(reversed(daily))[:10]
    assert caught.value.message == (
        f"no complete logical backup set 20261124T020001Z in {store.describe(key_for(CLUSTER, BackupKind.LOGICAL, '20261124T020001Z'))}"
        f"; the newest logical sets: {', '.join(newest)}"
    )
    assert daily[0] not in caught.value.message and daily[1] not in caught.value.message  # the 11th and 12th newest
    assert schema not in caught.value.message and interrupted not in caught.value.message
    assert (caught.value.kind, caught.value.backup_set_id) == ("logical", "20261124T020001Z")
    assert find_set(store, CLUSTER, BackupKind.LOGICAL, daily[3]).backup_set_id == daily[3]


def test_a_kind_with_no_set_says_so(store: Store) -> None:
    publish(store, BackupKind.LOGICAL, T0)
    with pytest.raises(
        SetNotFound,
        match=r"no complete schema backup set 20261124T020001Z in .*; the store holds no complete schema set$",
    ):
        find_set(store, CLUSTER, BackupKind.SCHEMA, "20261124T020001Z")


def test_an_id_typed_into_a_request_is_refused_but_no_set_at_all_is_a_failure(store: Store) -> None:
    with pytest.raises(NoBackupForTarget) as empty:
        find_requested_set(store, CLUSTER, BackupKind.LOGICAL, "latest")
    assert not isinstance(empty.value, RequestRefused), "no backup at all is the system's problem: it pages"

    only = publish(store, BackupKind.LOGICAL, T0)
    with pytest.raises(RequestRefused) as caught:
        find_requested_set(store, CLUSTER, BackupKind.LOGICAL, "20200101T020000Z")
    assert caught.value.message.endswith(f"; the newest logical set: {only}") and "\n" not in str(caught.value)
    assert find_requested_set(store, CLUSTER, BackupKind.LOGICAL, "latest").backup_set_id == only
