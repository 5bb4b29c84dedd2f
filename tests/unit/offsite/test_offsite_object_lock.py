"""S3 Object Lock on a real S3-protocol server (moto in server mode on 127.0.0.1; only AWS itself
is stood in for): uploads carry the retention, a locked object is never deleted (and retention
reports the set instead), an ended lock lets every version go, a damaged locked copy is repaired
by a new version on top."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import key_for, list_catalog
from hms_dr.errors import ObjectLocked
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload, new_backup_set_id
from hms_dr.offsite.sync import sync_offsite
from hms_dr.publish import publish_set
from hms_dr.retention import RetentionRule, apply_retention_plan, plan_retention
from hms_dr.store import ObjectLockRetention, Store, open_store
from hms_sandbox.cluster import free_port
from hms_sandbox.s3server import MotoServer

CLUSTER = "hms-primary"
LOCK = ObjectLockRetention("COMPLIANCE", 90)
PART = 5 * 2**20


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import boto3

    server = MotoServer(free_port(), tmp_path_factory.mktemp("moto"))
    server.start()
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    try:
        yield client
    finally:
        server.stop()


def bucket(client: Any, *, locked: bool) -> str:
    name = f"lock-test-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=locked)
    return name


def versions(client: Any, name: str, key: str) -> tuple[int, int]:
    listed = client.list_object_versions(Bucket=name, Prefix=key)
    return len(listed.get("Versions", [])), len(listed.get("DeleteMarkers", []))


def test_uploads_to_a_locked_bucket_carry_the_policy_retention_single_and_multipart(s3: Any) -> None:
    name = bucket(s3, locked=True)
    store = open_store(f"s3://{name}", s3_client=s3, part_size_bytes=PART, object_lock=LOCK)
    assert store.features.supports_object_lock
    before = datetime.now(UTC)
    store.put_bytes("a/small", b"small payload")
    store.put_bytes("a/large", os.urandom(PART + 4096))  # two parts: a multipart upload
    for key in ("a/small", "a/large"):
        head = s3.head_object(Bucket=name, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert before + timedelta(days=89) < head["ObjectLockRetainUntilDate"] < before + timedelta(days=91)
        assert store.stat(key).locked_at(datetime.now(UTC))


def test_a_bucket_without_object_lock_gets_plain_uploads(s3: Any) -> None:
    name = bucket(s3, locked=False)
    store = open_store(f"s3://{name}", s3_client=s3, object_lock=LOCK)
    assert not store.features.supports_object_lock
    store.put_bytes("a/b", b"x")
    assert "ObjectLockMode" not in s3.head_object(Bucket=name, Key="a/b")
    store.delete("a/b")


def test_a_locked_object_is_refused_before_any_delete_is_sent(s3: Any) -> None:
    name = bucket(s3, locked=True)
    store = open_store(f"s3://{name}", s3_client=s3, object_lock=LOCK)
    store.put_bytes("a/b", b"x")
    with pytest.raises(ObjectLocked, match=r"s3://.*/a/b is under Object Lock \(retained until"):
        store.delete("a/b")
    # S3 would have "deleted" it with a delete marker that hides it and frees nothing: no marker.
    assert versions(s3, name, "a/b") == (1, 0)
    assert store.exists("a/b")


def test_once_the_lock_ends_every_version_of_the_key_goes(s3: Any) -> None:
    name = bucket(s3, locked=True)
    store = open_store(f"s3://{name}", s3_client=s3, object_lock=LOCK)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    for body in (b"damaged", b"repaired"):  # a repaired copy: two versions of one key
        s3.put_object(Bucket=name, Key="a/b", Body=body, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon)
    with pytest.raises(ObjectLocked):
        store.delete("a/b")
    time.sleep(max((soon - datetime.now(UTC)).total_seconds(), 0) + 1)
    store.delete("a/b")
    assert versions(s3, name, "a/b") == (0, 0)
    assert not store.exists("a/b")


def make_set(store: Store, finished_at: datetime) -> str:
    set_id = new_backup_set_id(finished_at)
    stored = store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, set_id, "dump.gpg"), os.urandom(2048))
    publish_set(
        store,
        kind=BackupKind.LOGICAL,
        cluster=CLUSTER,
        backup_set_id=set_id,
        started_at=finished_at,
        finished_at=finished_at,
        payloads=[Payload("dump.gpg", stored.size_bytes, stored.sha256, "test")],
        extra={},
    )
    return set_id


def test_retention_reports_a_locked_set_and_deletes_none_of_it_twice(s3: Any, tmp_path: Path) -> None:
    name = bucket(s3, locked=True)
    store = open_store(f"s3://{name}", s3_client=s3, object_lock=LOCK)
    now = datetime.now(UTC)
    old, new = make_set(store, now - timedelta(days=120)), make_set(store, now - timedelta(days=1))
    rule = RetentionRule(max_age=timedelta(days=90), orphan_max_age=timedelta(hours=24))
    before = sorted(o.key for o in store.list())
    for _ in range(2):
        plan = plan_retention(list_catalog(store, CLUSTER, BackupKind.LOGICAL), BackupKind.LOGICAL, rule, now)
        assert [e.backup_set_id for e in plan.expire] == [old]
        outcome = apply_retention_plan(plan, store, CLUSTER, now=now)
        assert outcome.deleted == ()
        assert "under Object Lock until" in outcome.locked[old]
        assert sorted(o.key for o in store.list()) == before
    assert new in {s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.LOGICAL).sets}


def test_a_damaged_locked_copy_is_repaired_by_a_new_version_on_top(s3: Any, tmp_path: Path) -> None:
    (tmp_path / "primary").mkdir()
    primary = open_store((tmp_path / "primary").as_uri())
    name = bucket(s3, locked=True)
    offsite = open_store(f"s3://{name}", s3_client=s3, object_lock=LOCK)
    set_id = make_set(primary, datetime.now(UTC))
    sync = {"window": timedelta(days=90), "reverify_weeks": 1, "kinds": (BackupKind.LOGICAL,)}
    sync_offsite(primary, offsite, CLUSTER, now=datetime.now(UTC), **sync)  # type: ignore[arg-type]
    key = key_for(CLUSTER, BackupKind.LOGICAL, set_id, "dump.gpg")
    s3.put_object(Bucket=name, Key=key, Body=b"\0" * 2048)  # bit rot, or someone with the keys
    report = sync_offsite(primary, offsite, CLUSTER, now=datetime.now(UTC), **sync)  # type: ignore[arg-type]
    assert report.kinds["logical"].repaired == [set_id]
    assert offsite.get_bytes(key) == primary.get_bytes(key)
    assert versions(s3, name, key) == (3, 0)  # the first copy and the damaged one stay, locked or not
    assert offsite.exists(key_for(CLUSTER, BackupKind.LOGICAL, set_id, MANIFEST_NAME))
