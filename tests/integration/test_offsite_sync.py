"""hms_offsite_sync through Airflow between two S3 servers on loopback: the sandbox's moto (the
primary store) and a second moto server of this module's own, with an Object Lock bucket and
credentials of its own (the `hms_offsite` connection). moto stands in for AWS S3 only: every byte
goes over HTTP through the real S3 driver, the real DAG and `airflow dags test`.

One module, four DAG runs in order: the offsite store unreachable (retried, then a clear failure,
nothing deleted anywhere); a full sync of every kind (with offsite retention: an expired unlocked
copy goes, an expired locked copy is refused and reported); then a copy killed mid-upload plus a
corrupted offsite object, and a rerun (the trigger form's "re-read every offsite copy") that
completes the one exactly once and finds and repairs the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import key_for, list_catalog
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload, new_backup_set_id, parse_manifest
from hms_dr.publish import publish_set
from hms_dr.store import ObjectLockRetention, Store, open_store
from hms_sandbox.cluster import free_port
from hms_sandbox.s3server import MotoServer, create_buckets

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_offsite_sync"
CLUSTER = "hms-offsite-drill"  # a cluster of its own in the sandbox's primary bucket
OFFSITE_BUCKET = "hms-offsite"
OFFSITE_KEYS = ("OFFSITEDRILLACCESS", "offsite-drill-secret")  # not the primary's credentials
PART = 5 << 20
POLICY = {
    "cluster.name": CLUSTER,
    "store.part_size_mib": 5,  # so the base backup's 6 MiB payload goes up as a multipart upload
    "offsite.retries": 1,
    "offsite.retry_delay_s": 0,
}
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Drill:
    primary: Store
    offsite: Store
    offsite_client: Any
    offsite_endpoint: str
    sets: dict[BackupKind, list[str]]
    old_report: str  # a restore-test report older than its 365 days, on the primary
    locked_old: str  # an offsite logical copy past its 90 days but still locked
    unlocked_old: str  # an offsite logical copy past its 90 days, not locked

    def offsite_env(self, endpoint: str | None = None) -> dict[str, str]:
        conn = {
            "conn_type": "aws",
            "login": OFFSITE_KEYS[0],
            "password": OFFSITE_KEYS[1],
            "extra": {"endpoint_url": endpoint or self.offsite_endpoint, "region_name": "us-east-1"},
        }
        return {"AIRFLOW_CONN_HMS_OFFSITE": json.dumps(conn)}


def make_set(
    store: Store,
    kind: BackupKind,
    finished_at: datetime,
    payloads: dict[str, int],
    *,
    set_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    set_id = set_id or new_backup_set_id(finished_at)
    stored = []
    for name, size in payloads.items():
        put = store.put_bytes(key_for(CLUSTER, kind, set_id, name), os.urandom(size))
        stored.append(Payload(name, put.size_bytes, put.sha256, "test"))
    publish_set(
        store,
        kind=kind,
        cluster=CLUSTER,
        backup_set_id=set_id,
        started_at=finished_at - timedelta(minutes=2),
        finished_at=finished_at,
        payloads=stored,
        extra=extra or {},
    )
    return set_id


def segment(n: int) -> str:
    return f"00000001000000000000{n:04X}"


@pytest.fixture(scope="module")
def drill(sandbox: Any) -> Iterator[Drill]:
    import boto3

    server = MotoServer(free_port(), Path(sandbox.state_dir) / "offsite-moto")
    server.start()
    try:
        create_buckets(
            server.endpoint_url,
            [OFFSITE_BUCKET],
            access_key=OFFSITE_KEYS[0],
            secret_key=OFFSITE_KEYS[1],
            object_lock_buckets=[OFFSITE_BUCKET],
        )
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=OFFSITE_KEYS[0],
            aws_secret_access_key=OFFSITE_KEYS[1],
        )
        primary = open_store(f"s3://{sandbox.primary_bucket}", s3_client=sandbox.s3_client(), part_size_bytes=PART)
        offsite = open_store(
            f"s3://{OFFSITE_BUCKET}", s3_client=client, part_size_bytes=PART, object_lock=ObjectLockRetention()
        )
        now = datetime.now(UTC)
        daily = [
            make_set(primary, BackupKind.LOGICAL, now - timedelta(days=d), {"dump.pgdump.zst.gpg": 64 << 10})
            for d in (2, 1)
        ]
        sets = {
            BackupKind.LOGICAL: daily,
            BackupKind.SCHEMA: [
                make_set(
                    primary, BackupKind.SCHEMA, now - timedelta(days=1), {"schema.sql.zst.gpg": 4096}, set_id=daily[1]
                )
            ],
            BackupKind.DATA: [
                make_set(
                    primary, BackupKind.DATA, now - timedelta(days=1), {"data.pgdump.zst.gpg": 8192}, set_id=daily[1]
                )
            ],
            BackupKind.BASE: [
                make_set(
                    primary,
                    BackupKind.BASE,
                    now - timedelta(days=3),
                    {"base.tar.zst.gpg": 6 << 20, "pg_wal.tar.zst.gpg": 2048},
                    extra={"base_backup": {"start_wal_file": segment(1)}},
                )
            ],
            BackupKind.WAL: [
                make_set(
                    primary,
                    BackupKind.WAL,
                    now - timedelta(minutes=n),
                    {f"{segment(n)}.zst.gpg": 1024},
                    set_id=segment(n),
                )
                for n in (1, 2, 3)
            ],
            BackupKind.RESTORE_TEST: [
                make_set(primary, BackupKind.RESTORE_TEST, now - timedelta(days=6), {"summary.json": 512})
            ],
        }
        old_report = make_set(primary, BackupKind.RESTORE_TEST, now - timedelta(days=400), {"summary.json": 512})
        unlocked = open_store(f"s3://{OFFSITE_BUCKET}", s3_client=client)  # no Object Lock asked: plain uploads
        yield Drill(
            primary=primary,
            offsite=offsite,
            offsite_client=client,
            offsite_endpoint=server.endpoint_url,
            sets=sets,
            old_report=old_report,
            locked_old=make_set(offsite, BackupKind.LOGICAL, now - timedelta(days=120), {"dump.pgdump.zst.gpg": 1024}),
            unlocked_old=make_set(
                unlocked, BackupKind.LOGICAL, now - timedelta(days=110), {"dump.pgdump.zst.gpg": 1024}
            ),
        )
    finally:
        server.stop()


def all_keys(store: Store) -> dict[str, int]:
    return {o.key: o.size_bytes for o in store.list(f"{CLUSTER}/")}


def assert_no_manifest_without_its_payloads(offsite: Store) -> None:
    for kind in BackupKind:
        for backup_set in list_catalog(offsite, CLUSTER, kind).sets:
            for payload in backup_set.manifest.payloads:
                stored = offsite.stat(key_for(CLUSTER, kind, backup_set.backup_set_id, payload.name))
                assert stored.size_bytes == payload.size_bytes


@pytest.fixture(scope="module")
def unreachable_run(dag_runner: Any, drill: Drill) -> tuple[Any, dict[str, int], dict[str, int], int]:
    before = (all_keys(drill.primary), all_keys(drill.offsite))
    closed_port = free_port()
    outcome = dag_runner.run(
        DAG_ID, policy=POLICY, env=drill.offsite_env(f"http://127.0.0.1:{closed_port}"), name="offsite-down"
    )
    return outcome, *before, closed_port


@pytest.fixture(scope="module")
def full_run(dag_runner: Any, drill: Drill, unreachable_run: Any) -> Any:
    outcome = dag_runner.run(DAG_ID, policy=POLICY, env=drill.offsite_env(), name="offsite")
    assert outcome.state == "success", outcome.output[-8000:]
    return outcome


CRASH = r'''
import os, signal, sys
from datetime import datetime, timedelta, timezone
import boto3
from hms_dr.manifest import BackupKind
from hms_dr.offsite.sync import sync_offsite
from hms_dr.store import ObjectLockRetention, open_store

def client(endpoint, key, secret):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret)

e = os.environ
primary = open_store(e["PRIMARY_URL"], s3_client=client(e["PRIMARY_ENDPOINT"], e["PRIMARY_KEY"], e["PRIMARY_SECRET"]), part_size_bytes=5 << 20)
offsite = open_store(e["OFFSITE_URL"], s3_client=client(e["OFFSITE_ENDPOINT"], e["OFFSITE_KEY"], e["OFFSITE_SECRET"]),
                     part_size_bytes=5 << 20, object_lock=ObjectLockRetention())

class DiesMidUpload:
    """The primary payload's stream; the process is SIGKILLed once part 1 of its upload is read."""
    def __init__(self, inner):
        self.inner, self.seen = inner, 0
    def read(self, n=-1):
        chunk = self.inner.read(n)
        self.seen += len(chunk)
        if self.seen > (5 << 20) + (512 << 10):
            os.kill(os.getpid(), signal.SIGKILL)
        return chunk
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.inner.close()

real_open = primary.open
primary.open = lambda key: DiesMidUpload(real_open(key)) if key == e["CRASH_IN"] else real_open(key)
sync_offsite(primary, offsite, e["CLUSTER"], window=timedelta(days=90), now=datetime.now(timezone.utc),
             reverify_weeks=52, kinds=(BackupKind.LOGICAL,))
print("the copy was not killed")
'''


@pytest.fixture(scope="module")
def crashed_then_rerun(dag_runner: Any, drill: Drill, sandbox: Any, full_run: Any) -> dict[str, Any]:
    """A new daily set (a small payload, then a 7 MiB one) whose copy is killed with SIGKILL while
    its second payload is mid multipart upload; one offsite payload of the base backup corrupted
    (same size, other bytes); then the DAG again."""
    now = datetime.now(UTC)
    set_id = make_set(drill.primary, BackupKind.LOGICAL, now, {"a-toc.gpg": 4096, "b-dump.gpg": 7 << 20})
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "plugins"),
        "CLUSTER": CLUSTER,
        "PRIMARY_URL": f"s3://{sandbox.primary_bucket}",
        "PRIMARY_ENDPOINT": sandbox.s3_endpoint_url,
        "PRIMARY_KEY": sandbox.secrets.s3_access_key,
        "PRIMARY_SECRET": sandbox.secrets.s3_secret_key,
        "OFFSITE_URL": f"s3://{OFFSITE_BUCKET}",
        "OFFSITE_ENDPOINT": drill.offsite_endpoint,
        "OFFSITE_KEY": OFFSITE_KEYS[0],
        "OFFSITE_SECRET": OFFSITE_KEYS[1],
        "CRASH_IN": key_for(CLUSTER, BackupKind.LOGICAL, set_id, "b-dump.gpg"),
    }
    crash = subprocess.run([sys.executable, "-c", CRASH], env=env, capture_output=True, text=True, timeout=300)
    after_crash = {o.key for o in drill.offsite.list(key_for(CLUSTER, BackupKind.LOGICAL, set_id))}
    base_id = drill.sets[BackupKind.BASE][0]
    corrupted = key_for(CLUSTER, BackupKind.BASE, base_id, "pg_wal.tar.zst.gpg")
    # Damage that arrives locked (as bit rot of a locked version would be): same size, other bytes.
    drill.offsite_client.put_object(
        Bucket=OFFSITE_BUCKET,
        Key=corrupted,
        Body=b"\0" * 2048,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=30),
    )
    # The trigger form's reverify_all: every offsite set is re-read by sha256 on this run.
    outcome = dag_runner.run(
        DAG_ID, policy=POLICY, env=drill.offsite_env(), name="offsite", conf={"reverify_all": True}
    )
    assert outcome.state == "success", outcome.output[-8000:]
    return {
        "set_id": set_id,
        "crash": crash,
        "after_crash": after_crash,
        "corrupted": corrupted,
        "base_id": base_id,
        "outcome": outcome,
    }


def test_unreachable_offsite_store_is_retried_then_fails_clearly_with_nothing_deleted_anywhere(
    unreachable_run: Any, drill: Drill
) -> None:
    outcome, primary_before, offsite_before, closed_port = unreachable_run
    assert outcome.state == "failed"
    assert outcome.task_states["check_both_stores"] == "failed"
    assert outcome.task_tries["check_both_stores"] == 2, "an unreachable store is transient: retried"
    for task_id in (
        "copy_missing_sets",
        "check_offsite_freshness",
        "expire_offsite_sets",
        "expire_restore_test_reports",
    ):
        assert outcome.task_states[task_id] == "upstream_failed", task_id
    assert "StoreUnavailable" in outcome.output and f"127.0.0.1:{closed_port}" in outcome.output
    assert all_keys(drill.primary) == primary_before  # the year-old report is still on the primary
    assert all_keys(drill.offsite) == offsite_before  # and the expired unlocked copy still offsite


def test_a_full_sync_copies_every_set_of_every_kind_proven_and_locked(
    full_run: Any, drill: Drill, dag_runner: Any
) -> None:
    assert set(full_run.task_states.values()) == {"success"}
    report = dag_runner.returned(DAG_ID, full_run.run_id, "copy_missing_sets")["kinds"]
    for kind, set_ids in drill.sets.items():
        offsite_ids = {s.backup_set_id for s in list_catalog(drill.offsite, CLUSTER, kind).sets}
        assert set(set_ids) <= offsite_ids, kind
        assert report[kind.value]["copied_count"] == len(set_ids)
        for set_id in set_ids:
            for obj in drill.primary.list(key_for(CLUSTER, kind, set_id)):
                assert (
                    hashlib.sha256(drill.offsite.get_bytes(obj.key)).digest()
                    == hashlib.sha256(drill.primary.get_bytes(obj.key)).digest()
                )
                head = drill.offsite_client.head_object(Bucket=OFFSITE_BUCKET, Key=obj.key)
                assert head["ObjectLockMode"] == "COMPLIANCE", obj.key  # the multipart base.tar too
                assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=89)
    assert drill.old_report not in {
        s.backup_set_id for s in list_catalog(drill.offsite, CLUSTER, BackupKind.RESTORE_TEST).sets
    }
    assert_no_manifest_without_its_payloads(drill.offsite)
    # What it copied, sizes and throughput, and the age of the newest offsite copy per kind.
    assert "base: copied 1 set(s)" in full_run.output and "MiB/s" in full_run.output
    for kind in BackupKind:
        assert f"{kind.value}: newest offsite copy" in full_run.output
    assert report["base"]["copied_bytes"] == (6 << 20) + 2048


def test_offsite_retention_deletes_an_expired_copy_and_reports_a_locked_one(
    full_run: Any, drill: Drill, dag_runner: Any
) -> None:
    offsite_ids = {s.backup_set_id for s in list_catalog(drill.offsite, CLUSTER, BackupKind.LOGICAL).sets}
    assert drill.unlocked_old not in offsite_ids
    assert drill.locked_old in offsite_ids
    locked_folder = key_for(CLUSTER, BackupKind.LOGICAL, drill.locked_old)
    listed = drill.offsite_client.list_object_versions(Bucket=OFFSITE_BUCKET, Prefix=locked_folder)
    assert len(listed.get("Versions", [])) == 2 and not listed.get("DeleteMarkers")  # never even a delete marker
    expiry = dag_runner.returned(DAG_ID, full_run.run_id, "expire_offsite_sets")
    assert "under Object Lock until" in expiry["logical"]["locked"][drill.locked_old]
    assert expiry["logical"]["expired"] == [drill.unlocked_old]
    assert f"kept logical set {drill.locked_old}" in full_run.output
    # The primary's restore-test tier: the year-old report went, after the copy pass.
    primary_reports = {s.backup_set_id for s in list_catalog(drill.primary, CLUSTER, BackupKind.RESTORE_TEST).sets}
    assert drill.old_report not in primary_reports and drill.sets[BackupKind.RESTORE_TEST][0] in primary_reports


def test_a_copy_killed_mid_upload_leaves_no_manifest_and_the_rerun_completes_it_exactly_once(
    crashed_then_rerun: dict[str, Any], drill: Drill, dag_runner: Any
) -> None:
    crash, set_id = crashed_then_rerun["crash"], crashed_then_rerun["set_id"]
    assert crash.returncode == -signal.SIGKILL, crash.stdout[-2000:] + crash.stderr[-2000:]
    folder = key_for(CLUSTER, BackupKind.LOGICAL, set_id)
    assert crashed_then_rerun["after_crash"] == {folder + "a-toc.gpg"}  # no manifest, no half payload
    report = dag_runner.returned(DAG_ID, crashed_then_rerun["outcome"].run_id, "copy_missing_sets")["kinds"]["logical"]
    assert report["copied"] == [set_id] and report["reused_payloads"] == 1
    for name in ("a-toc.gpg", "b-dump.gpg", MANIFEST_NAME):
        listed = drill.offsite_client.list_object_versions(Bucket=OFFSITE_BUCKET, Prefix=folder + name)
        assert len(listed.get("Versions", [])) == 1 and not listed.get("DeleteMarkers"), name  # stored exactly once
        assert drill.offsite.get_bytes(folder + name) == drill.primary.get_bytes(folder + name)
    assert_no_manifest_without_its_payloads(drill.offsite)


def test_a_corrupted_offsite_object_is_found_and_copied_again_over_its_lock(
    crashed_then_rerun: dict[str, Any], drill: Drill, dag_runner: Any
) -> None:
    key, base_id = crashed_then_rerun["corrupted"], crashed_then_rerun["base_id"]
    outcome = crashed_then_rerun["outcome"]
    report = dag_runner.returned(DAG_ID, outcome.run_id, "copy_missing_sets")["kinds"]["base"]
    assert report["repaired"] == [base_id]
    assert drill.offsite.get_bytes(key) == drill.primary.get_bytes(key)
    manifest = parse_manifest(
        drill.offsite.get_bytes(key_for(CLUSTER, BackupKind.BASE, base_id, MANIFEST_NAME)), where="offsite"
    )
    assert hashlib.sha256(drill.offsite.get_bytes(key)).hexdigest() == manifest.payload("pg_wal.tar.zst.gpg").sha256
    assert "is damaged and under a lock until" in outcome.output  # the damaged version stays, and the log says so
    assert f"{key} has sha256" in outcome.output  # found by the sha256 re-read: the size was the same
    listed = drill.offsite_client.list_object_versions(Bucket=OFFSITE_BUCKET, Prefix=key)
    assert len(listed["Versions"]) == 3  # the first copy, the locked damaged version, the repair on top
