"""The offsite sync engine between two real file:// stores (tmp dirs): what it copies, in which
order, what a rerun does, and how damage on either side is found. S3 and Object Lock are covered
by tests/unit/offsite/test_offsite_object_lock.py and tests/integration/test_offsite_sync.py."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from hms_dr.catalog import key_for, list_catalog
from hms_dr.errors import OffsiteCopyFailed
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload, new_backup_set_id
from hms_dr.offsite.sync import SyncReport, sync_offsite
from hms_dr.publish import publish_set
from hms_dr.store import PutResult, Store, open_store

CLUSTER = "hms-primary"
WINDOW = timedelta(days=90)


class RecordingStore:
    """A real store that remembers the order of its writes (the order is what is under test)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.url = inner.url
        self.features = inner.features
        self.puts: list[str] = []

    def put(self, key: str, src: BinaryIO, **kwargs: Any) -> PutResult:
        result = self._inner.put(key, src, **kwargs)
        self.puts.append(key)
        return result

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = False) -> PutResult:
        result = self._inner.put_bytes(key, data, overwrite=overwrite)
        self.puts.append(key)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def a_store(root: Path) -> Store:
    root.mkdir(mode=0o700)
    return open_store(root.as_uri())


def make_set(
    store: Store,
    kind: BackupKind,
    finished_at: datetime,
    sizes: tuple[int, ...] = (3000, 700),
    set_id: str | None = None,
) -> str:
    set_id = set_id or new_backup_set_id(finished_at)
    payloads = []
    for index, size in enumerate(sizes):
        name = f"part-{index}.gpg"
        stored = store.put_bytes(key_for(CLUSTER, kind, set_id, name), os.urandom(size))
        payloads.append(Payload(name, stored.size_bytes, stored.sha256, "test"))
    body = {"base_backup": {"start_wal_file": "000000010000000000000001"}} if kind is BackupKind.BASE else {}
    publish_set(
        store,
        kind=kind,
        cluster=CLUSTER,
        backup_set_id=set_id,
        started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at,
        payloads=payloads,
        extra=body,
    )
    return set_id


@pytest.fixture()
def stores(tmp_path: Path) -> tuple[Store, Store, dict[BackupKind, list[str]]]:
    primary, offsite = a_store(tmp_path / "primary"), a_store(tmp_path / "offsite")
    now = datetime.now(UTC)
    made = {
        BackupKind.LOGICAL: [make_set(primary, BackupKind.LOGICAL, now - timedelta(days=d)) for d in (2, 1)],
        BackupKind.SCHEMA: [make_set(primary, BackupKind.SCHEMA, now - timedelta(days=1), sizes=(500,))],
        BackupKind.BASE: [make_set(primary, BackupKind.BASE, now - timedelta(days=3), sizes=(6000, 100, 50))],
        BackupKind.WAL: [
            make_set(primary, BackupKind.WAL, now, sizes=(1200,), set_id=f"00000001000000000000000{n}")
            for n in (1, 2, 3)
        ],
        BackupKind.RESTORE_TEST: [make_set(primary, BackupKind.RESTORE_TEST, now - timedelta(days=5), sizes=(900,))],
    }
    return primary, offsite, made


def sync(primary: Store, offsite: Store, **kwargs: Any) -> SyncReport:
    return sync_offsite(
        primary,
        offsite,
        CLUSTER,
        window=WINDOW,
        now=datetime.now(UTC),
        reverify_weeks=kwargs.pop("reverify_weeks", 52),
        **kwargs,
    )


def contents(store: Store) -> dict[str, bytes]:
    return {obj.key: store.get_bytes(obj.key) for obj in store.list()}


def test_every_set_of_every_kind_is_copied_payloads_first_manifest_last(stores: Any) -> None:
    primary, offsite_store, made = stores
    offsite = RecordingStore(offsite_store)
    report = sync(primary, offsite)  # type: ignore[arg-type]
    assert contents(offsite_store) == contents(primary)
    for kind, set_ids in made.items():
        assert report.kinds[kind.value].copied_count == len(set_ids)
        assert report.kinds[kind.value].newest_offsite.backup_set_id == max(set_ids)
        for set_id in set_ids:
            folder = key_for(CLUSTER, kind, set_id)
            writes = [k for k in offsite.puts if k.startswith(folder)]
            assert writes[-1] == folder + MANIFEST_NAME and writes.count(folder + MANIFEST_NAME) == 1
    assert report.copied_bytes == sum(o.size_bytes for o in primary.list() if not o.key.endswith(MANIFEST_NAME))


def test_a_second_run_copies_nothing(stores: Any) -> None:
    primary, offsite_store, _ = stores
    sync(primary, offsite_store)
    offsite = RecordingStore(offsite_store)
    report = sync(primary, offsite)  # type: ignore[arg-type]
    assert offsite.puts == []
    assert report.copied_bytes == 0 and all(k.copied_count == 0 for k in report.kinds.values())


def test_payloads_an_interrupted_run_stored_are_proven_and_kept_a_wrong_one_is_replaced(stores: Any) -> None:
    primary, offsite_store, made = stores
    set_id = made[BackupKind.BASE][0]
    good, wrong = (key_for(CLUSTER, BackupKind.BASE, set_id, f"part-{i}.gpg") for i in (0, 1))
    offsite_store.put_bytes(good, primary.get_bytes(good))  # the crash came after this payload...
    offsite_store.put_bytes(wrong, b"x" * primary.stat(wrong).size_bytes)  # ...and this one was garbled
    offsite = RecordingStore(offsite_store)
    report = sync(primary, offsite, kinds=(BackupKind.BASE,))  # type: ignore[arg-type]
    assert good not in offsite.puts and wrong in offsite.puts
    assert report.kinds["base"].reused_payloads == 1
    assert contents(offsite_store) == {k: v for k, v in contents(primary).items() if "/base/" in k}


def test_a_damaged_primary_payload_is_never_published_offsite(stores: Any, tmp_path: Path) -> None:
    primary, offsite, made = stores
    damaged_set = made[BackupKind.LOGICAL][1]
    key = key_for(CLUSTER, BackupKind.LOGICAL, damaged_set, "part-0.gpg")
    path = tmp_path / "primary" / key
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01  # one flipped bit: same size, other sha256
    path.write_bytes(bytes(data))
    with pytest.raises(OffsiteCopyFailed, match=damaged_set):
        sync(primary, offsite)
    assert not offsite.exists(key)  # the stream failed at its end, before the object was stored
    assert not offsite.exists(key_for(CLUSTER, BackupKind.LOGICAL, damaged_set, MANIFEST_NAME))
    copied = {s.backup_set_id for s in list_catalog(offsite, CLUSTER, BackupKind.LOGICAL).sets}
    assert copied == {made[BackupKind.LOGICAL][0]}  # the other sets went across
    assert len(list_catalog(offsite, CLUSTER, BackupKind.WAL).sets) == 3


def test_a_truncated_offsite_payload_is_found_by_its_size_and_copied_again(stores: Any, tmp_path: Path) -> None:
    primary, offsite, made = stores
    sync(primary, offsite)
    key = key_for(CLUSTER, BackupKind.SCHEMA, made[BackupKind.SCHEMA][0], "part-0.gpg")
    (tmp_path / "offsite" / key).write_bytes(primary.get_bytes(key)[:100])
    report = sync(primary, offsite)
    assert report.kinds["schema"].repaired == [made[BackupKind.SCHEMA][0]]
    assert offsite.get_bytes(key) == primary.get_bytes(key)


def test_a_flipped_bit_offsite_is_found_by_the_sha256_re_read_and_copied_again(stores: Any, tmp_path: Path) -> None:
    primary, offsite, made = stores
    sync(primary, offsite)
    key = key_for(CLUSTER, BackupKind.LOGICAL, made[BackupKind.LOGICAL][0], "part-1.gpg")
    path = tmp_path / "offsite" / key
    data = bytearray(path.read_bytes())
    data[0] ^= 0x80
    path.write_bytes(bytes(data))
    report = sync(primary, offsite, reverify_weeks=1)  # every set's slot is due
    assert report.kinds["logical"].repaired == [made[BackupKind.LOGICAL][0]]
    assert report.kinds["wal"].reverified == 3
    assert hashlib.sha256(offsite.get_bytes(key)).digest() == hashlib.sha256(primary.get_bytes(key)).digest()


def test_damage_to_a_copy_the_primary_no_longer_holds_is_reported_not_hidden(stores: Any, tmp_path: Path) -> None:
    primary, offsite, made = stores
    sync(primary, offsite)
    set_id = made[BackupKind.RESTORE_TEST][0]
    for obj in primary.list(key_for(CLUSTER, BackupKind.RESTORE_TEST, set_id)):
        primary.delete(obj.key)  # expired on the primary long ago
    key = key_for(CLUSTER, BackupKind.RESTORE_TEST, set_id, "part-0.gpg")
    (tmp_path / "offsite" / key).write_bytes(b"\0" * 900)
    with pytest.raises(OffsiteCopyFailed, match="primary no longer holds"):
        sync(primary, offsite, reverify_weeks=1)


def test_sets_outside_the_offsite_window_stay_behind_except_the_newest_of_a_kind(tmp_path: Path) -> None:
    primary, offsite = a_store(tmp_path / "primary"), a_store(tmp_path / "offsite")
    now = datetime.now(UTC)
    old = [make_set(primary, BackupKind.RESTORE_TEST, now - timedelta(days=d)) for d in (300, 200)]
    report = sync(primary, offsite, kinds=(BackupKind.RESTORE_TEST,))
    assert report.kinds["restore-test"].too_old == 1
    assert [s.backup_set_id for s in list_catalog(offsite, CLUSTER, BackupKind.RESTORE_TEST).sets] == [old[1]]
