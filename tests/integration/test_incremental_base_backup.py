"""Incremental base backups on a real PostgreSQL 18 cluster (summarize_wal on), a moto S3 store and gpg.

A full backup, ~1% of the rows changed, then an incremental: its manifest records the chain
(backup_type, parent, chain, system identifier), it stores far less than the full, and
pg_verifybackup 18 proved its files (inside the tars) before upload; a second incremental chains
to the first. pg_verifybackup does check an incremental's files: one byte changed inside an
INCREMENTAL file of the tar is named. Refused in one line, nothing stored: an incremental asked
of the PostgreSQL 15 sandbox, summarize_wal off, a forced incremental with no parent. When the
server lacks WAL summaries since the parent's start, the auto mode takes a full backup instead;
a symmetric-key deployment decrypts the parent's backup_manifest from the store; a public-key one
without the worker's kept copy takes a full.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import shutil
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_base_backup import connection
from workdirs import state_root

from hms_dr.catalog import find_set, key_for
from hms_dr.crypto import EncryptionKey
from hms_dr.errors import BackupVerificationFailed, PreflightFailed, RequestRefused, ToolFailed
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.physical.incremental import SUMMARIZE_WAL_HINT, BackupTypeRequest
from hms_dr.physical.parentmanifest import KEPT_MANIFESTS_SUBDIR, kept_manifest_path
from hms_dr.physical.pgbasebackup import run_pg_basebackup
from hms_dr.physical.preflight import read_source_cluster, source_tools
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, BASE_TAR, verify_tar_backup
from hms_dr.policy import EncryptionMode
from hms_dr.policy.base_backup import BaseBackupMethod
from hms_sandbox.cluster import LocalCluster, free_port

pytestmark = pytest.mark.integration

ROWS = 200_000  # ~40 MB of table and index: the system catalogs must not dominate the full backup


@dataclass
class Pg18:
    cluster: LocalCluster
    password: str
    work: Path

    def conn(self) -> ConnectionInfo:
        return ConnectionInfo("127.0.0.1", self.cluster.port, "postgres", "postgres", password=self.password)

    def sql(self, query: str) -> Any:
        import psycopg

        with psycopg.connect(self.cluster.dsn("postgres", self.password), autocommit=True) as conn:
            cursor = conn.execute(query)
            row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]

    def set_summarize_wal(self, value: str) -> None:
        self.sql(f"ALTER SYSTEM SET summarize_wal = {value}")
        self.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while self.sql("SHOW summarize_wal") != value:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def wait_for_summaries_through(self, lsn: str) -> None:
        deadline = time.monotonic() + 30
        query = f"SELECT summarized_lsn >= '{lsn}'::pg_lsn FROM pg_get_wal_summarizer_state()"
        while not self.sql(query):
            assert time.monotonic() < deadline, f"the WAL summarizer did not reach {lsn} in 30 s"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def pg18() -> Iterator[Pg18]:
    base = state_root() / f"incr-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True)
    base.chmod(0o711)
    work = base / "work"
    work.mkdir(mode=0o700)
    cluster = LocalCluster(base / "data", free_port(), base / "log" / "server.log", base / "sockets", major=18)
    password = secrets.token_hex(16)
    cluster.init(password, data_checksums=True, conf={"fsync": "off", "wal_level": "replica", "summarize_wal": "on"})
    cluster.start()
    try:
        source = Pg18(cluster, password, work)
        source.sql(
            "CREATE TABLE patients AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS note, now() AS seen "
            f"FROM generate_series(1, {ROWS}) g"
        )
        source.sql("ALTER TABLE patients ADD PRIMARY KEY (id)")
        source.sql("CHECKPOINT")
        yield source
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def public_key(sandbox: Any) -> EncryptionKey:
    return EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)


@pytest.fixture
def prefix(primary_store: Any) -> Iterator[str]:
    """A cluster name of the test's own in the store (removed after)."""
    name = f"incr-{uuid.uuid4().hex[:8]}"
    yield name
    for obj in primary_store.list(f"{name}/"):
        primary_store.delete(obj.key)


def take(source: Pg18, store: Any, cluster: str, key: EncryptionKey, **options: Any) -> dict[str, Any]:
    time.sleep(1.05)  # set ids are UTC seconds: two sets taken within one second would share one
    options.setdefault("incremental_enabled", True)
    return take_base_backup(
        source.conn(), store, cluster, encryption_key=key, staging_dir=source.work / cluster, zstd_level=3, **options
    )


def change_one_percent(source: Pg18, offset: int) -> None:
    """~1% of the rows, contiguous: the blocks that change are ~1% of the table's."""
    source.sql(
        f"UPDATE patients SET note = md5(note), seen = now() WHERE id > {offset} AND id <= {offset + ROWS // 100}"
    )
    source.sql("CHECKPOINT")


def test_a_full_then_incrementals_that_chain_store_little_and_pass_pg_verifybackup(
    pg18: Pg18, primary_store: Any, public_key: EncryptionKey, prefix: str
) -> None:
    full = take(pg18, primary_store, prefix, public_key)
    assert full["backup_type"] == "full" and full["parent_backup_set_id"] is None and full["chain"] == []
    assert full["plan_reasons"] == ["no base backup set in the store yet"]
    assert full["base_backup"]["backup_type"] == "full" and "chain" not in full["base_backup"]

    change_one_percent(pg18, 0)
    # The staged method: pg_verifybackup 18 proves the tars in place (the default streams them).
    first = take(pg18, primary_store, prefix, public_key, method=BaseBackupMethod.STAGED)
    assert first["backup_type"] == "incremental"
    assert first["parent_backup_set_id"] == full["backup_set_id"] and first["chain"] == [full["backup_set_id"]]
    stored = find_set(primary_store, prefix, BackupKind.BASE, first["backup_set_id"]).manifest.body["base_backup"]
    assert stored["backup_type"] == "incremental"
    assert stored["parent_backup_set_id"] == full["backup_set_id"] and stored["chain"] == [full["backup_set_id"]]
    assert stored["system_identifier"] == full["base_backup"]["system_identifier"]
    # pg_verifybackup 18 read the incremental's tars in place (every file, INCREMENTAL.* included).
    assert stored["verified_by"].startswith("pg_verifybackup 18") and "--format=tar" in stored["verified_by"]
    full_bytes, incremental_bytes = full["sizes"]["stored_bytes"], first["sizes"]["stored_bytes"]
    assert (
        first["sizes"]["full_stored_bytes"]
        == find_set(primary_store, prefix, BackupKind.BASE, full["backup_set_id"]).size_bytes
    )
    assert incremental_bytes < full_bytes * 0.25, (incremental_bytes, full_bytes)
    print(
        f"\nfull {full_bytes} B stored ({full['sizes']['plain_bytes']} plain) in {full['seconds']['total']} s; "
        f"incremental {incremental_bytes} B stored ({first['sizes']['plain_bytes']} plain) in {first['seconds']['total']} s"
    )
    # What the server sent is an incremental: its backup_manifest lists INCREMENTAL.* relation files.
    kept = json.loads(kept_manifest_path(pg18.work / prefix, first["backup_set_id"]).read_text())
    assert any("/INCREMENTAL." in f["Path"] for f in kept["Files"])

    change_one_percent(pg18, ROWS // 2)
    second = take(pg18, primary_store, prefix, public_key)
    assert second["backup_type"] == "incremental" and second["parent_backup_set_id"] == first["backup_set_id"]
    assert second["chain"] == [full["backup_set_id"], first["backup_set_id"]]
    assert second["sizes"]["stored_bytes"] < full_bytes * 0.25
    # Streamed, an incremental's INCREMENTAL.* files are proven against its manifest in the stream.
    assert second["base_backup"]["method"] == "streamed"
    assert second["base_backup"]["verified_by"].startswith("hms-dr streamed check")
    kept_dir = pg18.work / prefix / KEPT_MANIFESTS_SUBDIR
    assert sorted(p.stat().st_mode & 0o777 for p in kept_dir.iterdir()) == [0o600] * 3
    assert kept_dir.stat().st_mode & 0o777 == 0o700

    forced_full = take(pg18, primary_store, prefix, public_key, backup_type=BackupTypeRequest.FULL)
    assert forced_full["backup_type"] == "full" and forced_full["plan_reasons"] == [
        "backup_type full was asked for this run"
    ]


def test_pg_verifybackup_18_names_a_changed_byte_inside_an_incremental_file(
    pg18: Pg18, primary_store: Any, public_key: EncryptionKey, prefix: str
) -> None:
    full = take(pg18, primary_store, prefix, public_key)
    change_one_percent(pg18, ROWS // 4)
    source = read_source_cluster(pg18.conn())
    pg = source_tools(source, where="pg18")
    tar_dir = pg18.work / prefix / "manual"
    run_pg_basebackup(
        pg18.conn(),
        pg,
        tar_dir,
        label="manual",
        incremental_manifest=kept_manifest_path(pg18.work / prefix, full["backup_set_id"]),
    )
    verify_tar_backup(pg, tar_dir, pg18.work / prefix)  # as taken: passes
    original = tar_dir / BASE_TAR
    tampered = tar_dir / "tampered.tar"
    victim = ""
    with tarfile.open(original) as source_tar, tarfile.open(tampered, "w") as out:
        for member in source_tar:
            data = source_tar.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None and not victim and "/INCREMENTAL." in member.name and member.size > 64:
                victim = member.name
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    assert victim, "the incremental holds no INCREMENTAL file"
    tampered.replace(original)
    with pytest.raises(BackupVerificationFailed) as caught:
        verify_tar_backup(pg, tar_dir, pg18.work / prefix)
    assert victim.removeprefix("./") in caught.value.message and "\n" not in caught.value.message
    json.loads((tar_dir / BACKUP_MANIFEST).read_text())  # the manifest itself untouched


def test_an_incremental_asked_of_the_15_sandbox_is_refused_before_anything_is_stored(
    sandbox: Any, primary_store: Any, public_key: EncryptionKey, prefix: str
) -> None:
    staging = state_root() / f"incr15-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o700, parents=True)
    try:
        for request in (BackupTypeRequest.AUTO, BackupTypeRequest.INCREMENTAL):
            with pytest.raises(PreflightFailed) as refused:
                take_base_backup(
                    connection(sandbox.dsn("hms_replica")),
                    primary_store,
                    prefix,
                    encryption_key=public_key,
                    staging_dir=staging,
                    zstd_level=3,
                    backup_type=request,
                    incremental_enabled=True,
                )
            message = refused.value.message
            assert "runs PostgreSQL 15." in message and "need PostgreSQL 17 or later" in message and "\n" not in message
            assert "base_backup.incremental: false" in (refused.value.hint or "")
            assert primary_store.list(f"{prefix}/") == []
        assert list(staging.iterdir()) == []
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def test_summarize_wal_off_is_refused_and_a_forced_incremental_without_parent_too(
    pg18: Pg18, primary_store: Any, public_key: EncryptionKey, prefix: str
) -> None:
    with pytest.raises(RequestRefused) as refused:
        take(
            pg18,
            primary_store,
            prefix,
            public_key,
            backup_type=BackupTypeRequest.INCREMENTAL,
            incremental_enabled=False,
        )
    assert (
        refused.value.message
        == "backup_type incremental refused: no base backup set in the store yet; nothing was copied"
    )
    assert primary_store.list(f"{prefix}/") == []
    pg18.set_summarize_wal("off")
    try:
        with pytest.raises(PreflightFailed) as refused_off:
            take(pg18, primary_store, prefix, public_key)
        assert "summarize_wal = off" in refused_off.value.message and "\n" not in refused_off.value.message
        assert SUMMARIZE_WAL_HINT in (refused_off.value.hint or "")
        assert primary_store.list(f"{prefix}/") == []
        # A full backup stays possible, forced or with the policy off.
        assert (
            take(pg18, primary_store, prefix, public_key, backup_type=BackupTypeRequest.FULL)["backup_type"] == "full"
        )
    finally:
        pg18.set_summarize_wal("on")


def test_without_wal_summaries_since_the_parent_auto_takes_a_full_and_a_forced_incremental_fails_saying_so(
    pg18: Pg18, primary_store: Any, public_key: EncryptionKey, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    parent = take(pg18, primary_store, prefix, public_key)
    # What wal_summary_keep_time (or summarize_wal off for long) does: no summaries from the
    # parent's start on. (Turning summarize_wal off and on again is not enough: the summarizer
    # then catches up on the WAL still in pg_wal.)
    pg18.sql("CHECKPOINT")
    # The summarizer writes asynchronously: wait until it has summarized past the checkpoint's
    # redo point, or a summary of the parent's range written after the unlink closes the gap.
    pg18.wait_for_summaries_through(pg18.sql("SELECT redo_lsn::text FROM pg_control_checkpoint()"))
    for summary in (pg18.cluster.data_dir / "pg_wal" / "summaries").glob("*.summary"):
        summary.unlink()
    change_one_percent(pg18, ROWS // 3)
    # Forced, the refusal is the run's failure, in one line that says a full backup is needed.
    with pytest.raises(ToolFailed) as failed:
        take(pg18, primary_store, prefix, public_key, backup_type=BackupTypeRequest.INCREMENTAL)
    assert "WAL summaries are required" in failed.value.message and "\n" not in failed.value.message
    assert "a full base backup is needed" in (failed.value.hint or "")
    assert find_set(primary_store, prefix, BackupKind.BASE, "latest").backup_set_id == parent["backup_set_id"]
    # auto takes a full backup in the same run instead.
    with caplog.at_level(logging.WARNING):
        taken = take(pg18, primary_store, prefix, public_key)
    assert taken["backup_type"] == "full" and taken["parent_backup_set_id"] is None
    assert any("full instead: the server refused the incremental" in r for r in taken["plan_reasons"])
    assert any("WAL summar" in r.getMessage() for r in caplog.records)
    assert parent["backup_type"] == "full"

    # From that full on, incrementals work.
    change_one_percent(pg18, ROWS // 3)
    assert take(pg18, primary_store, prefix, public_key)["parent_backup_set_id"] == taken["backup_set_id"]


def test_a_symmetric_key_decrypts_the_parent_manifest_a_public_key_without_the_kept_copy_takes_a_full(
    pg18: Pg18, primary_store: Any, public_key: EncryptionKey, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    symmetric = EncryptionKey(EncryptionMode.SYMMETRIC, "symmetric", passphrase=secrets.token_hex(16))
    full = take(pg18, primary_store, prefix, symmetric)
    shutil.rmtree(pg18.work / prefix / KEPT_MANIFESTS_SUBDIR)
    change_one_percent(pg18, ROWS // 5)
    with caplog.at_level(logging.INFO):
        incremental = take(pg18, primary_store, prefix, symmetric)
    assert incremental["parent_backup_set_id"] == full["backup_set_id"]
    assert any("decrypted from" in r.getMessage() and "plain sha256 proven" in r.getMessage() for r in caplog.records)

    other = f"{prefix}-pk"
    try:
        take(pg18, primary_store, other, public_key)
        shutil.rmtree(pg18.work / other / KEPT_MANIFESTS_SUBDIR)
        fallback = take(pg18, primary_store, other, public_key)
        assert fallback["backup_type"] == "full"
        assert any("cannot decrypt the stored copy" in r for r in fallback["plan_reasons"])
        shutil.rmtree(pg18.work / other / KEPT_MANIFESTS_SUBDIR)
        with pytest.raises(PreflightFailed, match="public_key encryption"):
            take(pg18, primary_store, other, public_key, backup_type=BackupTypeRequest.INCREMENTAL)
    finally:
        for obj in primary_store.list(f"{other}/"):
            primary_store.delete(obj.key)


def test_a_newest_set_with_an_unreadable_manifest_is_not_extended(
    pg18: Pg18, primary_store: Any, public_key: EncryptionKey, prefix: str
) -> None:
    take(pg18, primary_store, prefix, public_key)
    newer = "29991231T000000Z"
    primary_store.put_bytes(key_for(prefix, BackupKind.BASE, newer, "manifest.json"), b"{ not json")
    taken = take(pg18, primary_store, prefix, public_key)
    assert taken["backup_type"] == "full"
    assert taken["plan_reasons"] == [f"the newest base set {newer} has an unreadable manifest"]
