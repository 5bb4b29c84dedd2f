"""Directory-format daily dumps (``pg_dump -Fd -j``), on PostgreSQL 15 and 18: chosen by size under
``format: auto`` (a 1 MiB threshold here), each staged file stored as a payload of its own with
its proofs, the set restored with ``pg_restore -j`` and passing the restore test's checks, every
table's content digest equal to the one a custom-format dump of the same rows records; one changed
byte in one stored file fails before anything is restored; a killed pg_dump leaves no payload and
no staged file behind.

A database of its own on the sandbox's server, with what a directory dump stores in files of
their own: large objects, a partitioned table, names with spaces and capitals, an empty table.
The sets are taken and restore-tested with the engine's own functions, as the DAGs' tasks call
them; one DAG-level run (15) proves the daily DAG and the restore-test DAG carry a directory set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from hms_dr import publish, restore
from hms_dr.catalog import find_set, key_for
from hms_dr.crypto import EncryptionKey
from hms_dr.errors import ChecksumMismatch, ToolFailed
from hms_dr.logical import publish_logical_sets, take_logical_backup
from hms_dr.manifest import MANIFEST_NAME, BackupKind, dump_manifest
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import DumpFormat, EncryptionMode, load_policy
from hms_dr.quality import check_restored_database
from hms_dr.scratch.database import (
    ScratchDatabaseKind,
    create_scratch_database,
    drop_scratch_database,
    scratch_database_name,
)

pytestmark = pytest.mark.integration

DATABASE = "directory_dump_check"
CLUSTER = "directory-dump-test"
TABLES = {
    "public.priced": 400,
    "public.readings": 600,
    "public.empty_one": 0,
    "Audit Trail.Order Details": 50,
    "public.measurements": 0,
    "public.measurements 2026": 100,
}

SCHEMA = """
CREATE TABLE priced (id int PRIMARY KEY, item text NOT NULL, price numeric(10,2) NOT NULL, scan bytea);
INSERT INTO priced SELECT g, 'item ' || g, (g * 1.25)::numeric(10,2), CASE WHEN g % 3 = 0 THEN decode(md5(g::text), 'hex') END
FROM generate_series(1, 400) AS g;
CREATE TABLE readings (sensor text, reading double precision);  -- no key, duplicate rows
INSERT INTO readings SELECT 'ward-' || (g % 7), (g % 11) / 3.0 FROM generate_series(1, 600) AS g;
CREATE TABLE empty_one (id int PRIMARY KEY);
CREATE SCHEMA "Audit Trail";
CREATE TABLE "Audit Trail"."Order Details" (line int, note text);
INSERT INTO "Audit Trail"."Order Details" SELECT g, E'line\\t' || g FROM generate_series(1, 50) AS g;
CREATE TABLE measurements (taken date NOT NULL, value int) PARTITION BY RANGE (taken);
CREATE TABLE "measurements 2026" PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurements SELECT date '2026-01-01' + g, g FROM generate_series(0, 99) AS g;
SELECT lo_from_bytea(0, convert_to(repeat('consent form, page scan ', 500), 'UTF8'));
SELECT lo_from_bytea(0, '\\x00ff00ff'::bytea);
"""


@dataclasses.dataclass
class World:
    sandbox: Any
    store: Any
    policy: Any
    backup_key: EncryptionKey
    restore_key: Any
    admin: ConnectionInfo
    backup: ConnectionInfo

    def take(self, dump_format: DumpFormat, **options: Any) -> Any:
        """take_logical_backup with this policy in ``dump_format`` (auto: 1 MiB threshold)."""
        logical = dataclasses.replace(self.policy.logical_backup, format=dump_format)
        return take_logical_backup(
            self.backup,
            self.store,
            self.backup_key,
            cluster=CLUSTER,
            logical_backup=logical,
            compression=self.policy.compression,
            staging=options.pop("staging", self.policy.staging),
            **options,
        )

    def restore_test(self, backup_set_id: str, workdir: Path) -> dict[str, Any]:
        """Fetch (prove, decrypt), pg_restore -j 2, and the checks, as the restore-test DAG runs them."""
        backup_set = find_set(self.store, CLUSTER, BackupKind.LOGICAL, backup_set_id)
        scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "dirdump")
        try:
            fetched = restore.fetch_for_restore(self.store, backup_set, self.restore_key, workdir / "fetch", jobs=2)
            create_scratch_database(self.admin, scratch)
            restore.run_pg_restore(self.admin.with_database(scratch), fetched.path, jobs=2)
        finally:
            shutil.rmtree(workdir / "fetch", ignore_errors=True)
        try:
            return check_restored_database(
                self.admin.with_database(scratch).libpq_dsn(),
                backup_set.manifest.baselines,
                report_dir=workdir / "report",
                backup_set_id=backup_set_id,
                smoke_queries=(),
            )
        finally:
            drop_scratch_database(self.admin, scratch)


@pytest.fixture(scope="module")
def world(sandbox: Any, primary_store: Any, restore_key: Any) -> Iterator[World]:
    with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with psycopg.connect(sandbox.superuser_dsn(DATABASE), autocommit=True) as conn:
        conn.execute(SCHEMA)
        for (oid,) in conn.execute("SELECT oid FROM pg_largeobject_metadata").fetchall():
            conn.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO hms_backup").format(sql.Literal(oid)))
    base = load_policy(Path(sandbox.paths.policy_file))
    policy = dataclasses.replace(
        base,
        logical_backup=dataclasses.replace(
            base.logical_backup,
            baseline_views=(),
            data_only_tables=("readings",),
            directory_from_bytes=1 << 20,  # the database is ~8 MB: auto picks directory
            dump_jobs=2,
        ),
    )
    password = sandbox.secrets.role_passwords
    yield World(
        sandbox,
        primary_store,
        policy,
        EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key),
        restore_key,
        ConnectionInfo("127.0.0.1", sandbox.pg_port, "postgres", "postgres", password=password["postgres"]),
        ConnectionInfo("127.0.0.1", sandbox.pg_port, "hms_backup", DATABASE, password=password["hms_backup"]),
    )
    with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def publish_read_back(world: World, run: Any) -> str:
    """The DAG's read-back and publication: every payload re-read against its proof, manifests last."""
    for dump in run.dumps:
        for stored in dump.payloads:
            publish.verify_stored_payload(world.store, stored.key, stored.payload)
    publish_logical_sets(world.store, run, {"dag_id": "test", "run_id": "directory-dump"})
    return str(run.backup_set_id)


@pytest.fixture(scope="module")
def directory_set(world: World) -> Any:
    started = time.monotonic()
    set_id = publish_read_back(world, world.take(DumpFormat.AUTO))
    print(f"directory-format backup (auto, 1 MiB threshold): {time.monotonic() - started:.1f} s")
    return find_set(world.store, CLUSTER, BackupKind.LOGICAL, set_id)


def staged_leftovers(staging_dir: Path) -> list[Path]:
    folder = staging_dir / "logical-dump"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.pg_majors(15, 18)
def test_auto_picks_directory_and_every_staged_file_is_a_proven_payload(world: World, directory_set: Any) -> None:
    manifest = directory_set.manifest
    assert manifest.body["archive_format"] == "directory"
    names = [p.name for p in manifest.payloads]
    assert all(name.startswith("dump.dir.") and name.endswith(".zst.gpg") for name in names)
    assert "dump.dir.toc.dat.zst.gpg" in names
    # One data file per table holding rows (a partitioned parent has none) and per large object.
    data_files = [n for n in names if n.removeprefix("dump.dir.").split(".")[0].isdigit()]
    assert len(data_files) == len(TABLES) - 1
    assert len([n for n in names if n.startswith("dump.dir.blob_")]) == 2
    for payload in manifest.payloads:
        data = world.store.get_bytes(key_for(CLUSTER, BackupKind.LOGICAL, directory_set.backup_set_id, payload.name))
        assert len(data) == payload.size_bytes and hashlib.sha256(data).hexdigest() == payload.sha256
        assert not data.startswith(b"PGDMP") and b"consent form" not in data
        assert payload.plain_sha256 and payload.plain_size_bytes is not None
    assert manifest.body["verification"]["files"] == len(names)
    assert manifest.body["verification"]["tables_digested"] == len(TABLES) - 1
    assert {n: t["rows"] for n, t in manifest.baselines["tables"].items()} == TABLES
    assert manifest.baselines["large_objects"]["rows"] == 2
    # The exports keep their formats; the data-only export names the directory set as its parent.
    data_set = find_set(world.store, CLUSTER, BackupKind.DATA, directory_set.backup_set_id)
    assert data_set.manifest.body["archive_format"] == "custom"
    schema_set = find_set(world.store, CLUSTER, BackupKind.SCHEMA, directory_set.backup_set_id)
    assert "archive_format" not in schema_set.manifest.body
    assert staged_leftovers(world.policy.staging.dir) == []


@pytest.mark.pg_majors(15, 18)
def test_the_directory_set_restores_and_passes_every_content_check(
    world: World, directory_set: Any, tmp_path: Path
) -> None:
    summary = world.restore_test(directory_set.backup_set_id, tmp_path)
    assert summary["passed"], summary["failed"]
    rows = {row["target"]: row for row in summary["checks"] if row["check"] in ("table_content", "large_objects")}
    assert set(rows) == {*TABLES, "large objects"}
    assert all(row["passed"] and row["observed"] == row["expected"] for row in rows.values())
    assert "every value of its 400 rows as in the backup" in rows["public.priced"]["message"]


@pytest.mark.pg_majors(15, 18)
def test_a_custom_format_dump_of_the_same_rows_records_the_same_digests(world: World, directory_set: Any) -> None:
    custom = world.take(DumpFormat.CUSTOM)
    try:
        assert [d.archive_format for d in custom.dumps if d.kind is BackupKind.LOGICAL] == ["custom"]
        want = directory_set.manifest.baselines
        assert {n: t["content"] for n, t in custom.baselines["tables"].items()} == {
            n: t["content"] for n, t in want["tables"].items()
        }
        assert custom.baselines["large_objects"] == want["large_objects"]
    finally:
        publish.remove_unpublished(world.store, [p.key for d in custom.dumps for p in d.payloads])


@pytest.mark.pg_majors(15, 18)
def test_one_changed_byte_in_one_stored_file_fails_before_anything_is_restored(
    world: World, directory_set: Any, tmp_path: Path
) -> None:
    """A copy of the set whose largest table file has one byte changed in the store; the manifest
    still vouches for the original bytes."""
    tampered_id = "20990101T000000Z"
    source = directory_set.backup_set_id
    victim = max((p for p in directory_set.manifest.payloads if ".blob_" not in p.name), key=lambda p: p.size_bytes)
    for payload in directory_set.manifest.payloads:
        data = world.store.get_bytes(key_for(CLUSTER, BackupKind.LOGICAL, source, payload.name))
        if payload is victim:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
        world.store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, tampered_id, payload.name), data, overwrite=True)
    body = {**directory_set.manifest.body, "backup_set_id": tampered_id}
    world.store.put_bytes(
        key_for(CLUSTER, BackupKind.LOGICAL, tampered_id, MANIFEST_NAME), dump_manifest(body), overwrite=True
    )
    scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "dirdump")
    try:
        with pytest.raises(ChecksumMismatch, match=r"does not match the sha256 in its manifest") as failed:
            world.restore_test(tampered_id, tmp_path)
        assert victim.name in str(failed.value)
        with psycopg.connect(world.sandbox.superuser_dsn(), autocommit=True) as admin:
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,)).fetchone()
        assert found is None  # refused before a database was created, let alone restored into
        assert not (tmp_path / "fetch").exists()
    finally:
        for obj in list(world.store.list(key_for(CLUSTER, BackupKind.LOGICAL, tampered_id))):
            world.store.delete(obj.key)


@pytest.mark.pg_majors(15, 18)
def test_a_killed_pg_dump_leaves_no_payload_and_no_staged_file(world: World, tmp_path: Path) -> None:
    staging = dataclasses.replace(world.policy.staging, dir=tmp_path / "staging")
    moment = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    outcome: dict[str, BaseException] = {}

    def backup() -> None:
        try:
            world.take(DumpFormat.DIRECTORY, staging=staging, now=lambda: moment)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=backup)
    thread.start()
    killed = kill_pg_dump_writing_into(staging.dir / "logical-dump", timeout_s=60)
    thread.join(timeout=120)
    assert killed, "no pg_dump -Fd was seen to kill"
    assert isinstance(outcome.get("error"), ToolFailed), outcome
    assert outcome["error"].tool == "pg_dump"
    set_id = "20990102T030405Z"
    for kind in (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA):
        assert list(world.store.list(key_for(CLUSTER, kind, set_id))) == []
    assert staged_leftovers(staging.dir) == []


def kill_pg_dump_writing_into(folder: Path, *, timeout_s: float) -> bool:
    """SIGKILL the pg_dump leader whose --file is under ``folder`` as soon as it shows up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"pg_dump") and any(a.startswith(f"--file={folder}".encode()) for a in argv):
                os.kill(int(pid), signal.SIGKILL)
                return True
        time.sleep(0.002)
    return False


def test_the_daily_dag_takes_a_directory_set_and_the_restore_test_dag_passes_it(
    dag_runner: Any, primary_store: Any
) -> None:
    started = time.monotonic()
    daily = dag_runner.run(
        "hms_daily_logical_backup", policy={"logical_backup.format": "directory"}, name="directory-dump"
    )
    assert daily.state == "success", daily.output[-6000:]
    assert "whole-database dump format: directory" in daily.output
    newest = find_set(primary_store, "hms-primary", BackupKind.LOGICAL, "latest")
    assert newest.manifest.body["archive_format"] == "directory"
    tested = dag_runner.run("hms_restore_test", conf={"mode": "logical", "backup_id": newest.backup_set_id})
    assert tested.state == "success", tested.output[-6000:]
    summaries = sorted(
        o.key for o in primary_store.list("hms-primary/restore-test/") if o.key.endswith("/summary.json")
    )
    report = json.loads(primary_store.get_bytes(summaries[-1]))
    assert report["backup_set_id"] == newest.backup_set_id and report["passed"] is True
    print(f"daily DAG (directory) + restore-test DAG: {time.monotonic() - started:.1f} s")
