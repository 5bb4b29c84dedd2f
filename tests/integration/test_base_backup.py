"""The weekly base backup engine on real PostgreSQL 15 clusters, a moto S3 store and gpg.

A base backup of the sandbox cluster is published with the WAL range the server reports and the
sha256 of every stored byte, and its payloads decrypt to tars that pg_verifybackup accepts. A role
without REPLICATION, a wrong password, a pg_basebackup refused by pg_hba.conf, one killed mid-copy,
a key other than the policy's and too little staging space each fail in one line and leave
nothing: no manifest, no payload, no staging, no process. A tampered copy fails pg_verifybackup
naming the file. Retention keeps the newest four sets.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import find_set, key_for, list_catalog
from hms_dr.crypto import EncryptionKey
from hms_dr.decrypt import decrypt_file, download_verified
from hms_dr.errors import (
    BackupVerificationFailed,
    DatabaseUnavailable,
    EncryptionFailed,
    HmsDrError,
    PreflightFailed,
    ReplicationNotPermitted,
    StagingSpaceShort,
    ToolFailed,
)
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload, parse_utc
from hms_dr.pginstalls import PgInstall, data_install
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.backup_manifest import parse_backup_manifest
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.physical.pgbasebackup import run_pg_basebackup
from hms_dr.physical.verifybackup import extract_tar_backup, run_pg_verifybackup, verify_tar_backup
from hms_dr.policy import EncryptionMode
from hms_dr.policy.base_backup import BaseBackupMethod
from hms_dr.publish import publish_set
from hms_dr.retention import RetentionTiers, expire_by_tiers
from hms_dr.store import Store, open_store
from hms_dr.wal.names import format_lsn, parse_lsn

pytestmark = pytest.mark.integration

# A cluster name of its own: the WAL tests of this worker read base sets of "hms-primary".
CLUSTER = f"bb-test-{uuid.uuid4().hex[:6]}"
PLAIN_NAMES = {
    "base.tar.zst.gpg": "base.tar",
    "pg_wal.tar.zst.gpg": "pg_wal.tar",
    "backup_manifest.zst.gpg": "backup_manifest",
}


def PG15() -> PgInstall:
    """The sandbox and scratch clusters of this module run PostgreSQL 15: its programs verify them."""
    return data_install(15)


def server_facts(dsn: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_current_wal_lsn()::text, (SELECT timeline_id FROM pg_control_checkpoint()),"
            " (SELECT system_identifier FROM pg_control_system())::text"
        ).fetchone()
    assert row is not None
    return {"lsn": parse_lsn(row[0]), "timeline": row[1], "system_identifier": row[2]}


def walfile_name(dsn: str, lsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(%s::pg_lsn)", (lsn,)).fetchone()
    assert row is not None
    return str(row[0])


def connection(dsn: str, **changes: Any) -> ConnectionInfo:
    from psycopg.conninfo import conninfo_to_dict

    parts: dict[str, Any] = {**conninfo_to_dict(dsn), **changes}
    return ConnectionInfo(
        str(parts["host"]), int(parts["port"]), str(parts["user"]), str(parts["dbname"]), password=parts.get("password")
    )


def leftovers(directory: Path) -> list[str]:
    """What a run left in staging (gpg homes fall back to /tmp when the staging path is long)."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def stored_under(store: Store, cluster: str) -> list[str]:
    return [o.key for o in store.list(f"{cluster}/{BackupKind.BASE.value}/")]


@pytest.fixture(scope="module")
def encryption_key(sandbox: Any) -> EncryptionKey:
    return EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)


@pytest.fixture(scope="module")
def replica(sandbox: Any) -> ConnectionInfo:
    return connection(sandbox.dsn("hms_replica"))


@pytest.fixture(scope="module")
def taken(
    sandbox: Any,
    primary_store: Store,
    replica: ConnectionInfo,
    encryption_key: EncryptionKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """One base backup of the sandbox cluster, with the server's WAL position before and after."""
    staging = tmp_path_factory.mktemp("base-staging")
    before = server_facts(sandbox.superuser_dsn())
    result = take_base_backup(
        replica,
        primary_store,
        CLUSTER,
        encryption_key=encryption_key,
        staging_dir=staging,
        zstd_level=1,
        producer={"dag_id": "test", "run_id": "manual"},
    )
    after = server_facts(sandbox.superuser_dsn())
    return {"result": result, "before": before, "after": after, "staging": staging}


@pytest.mark.pg_majors(15, 18)
def test_the_set_records_the_wal_range_and_identity_the_server_reports(
    taken: dict[str, Any], sandbox: Any, primary_store: Store
) -> None:
    result = taken["result"]
    backup_set = find_set(primary_store, CLUSTER, BackupKind.BASE, result["backup_set_id"])
    base = backup_set.manifest.body["base_backup"]
    assert base == result["base_backup"]
    start, stop = parse_lsn(base["start_lsn"]), parse_lsn(base["stop_lsn"])
    assert taken["before"]["lsn"] <= start < stop <= taken["after"]["lsn"]
    assert base["timeline"] == base["stop_timeline"] == taken["before"]["timeline"]
    assert base["start_wal_file"] == walfile_name(sandbox.superuser_dsn(), base["start_lsn"])
    assert base["stop_wal_file"] == walfile_name(sandbox.superuser_dsn(), base["stop_lsn"])
    assert base["system_identifier"] == taken["before"]["system_identifier"]
    assert base["data_checksums"] is True and base["wal_segment_size"] == 16 << 20
    major = sandbox.pg_major
    # The default method proves the stream itself; pg_waldump (of the server's major) reads its WAL.
    assert base["server_version"].startswith(f"{major}.") and base["method"] == "streamed"
    assert base["verified_by"].startswith("hms-dr streamed check") and f"pg_waldump {major}." in base["verified_by"]
    assert base["label"] == f"hms-dr-{result['backup_set_id']}" and base["backup_from"] == "primary"
    manifest = backup_set.manifest
    assert manifest.started_at <= parse_utc(base["start_time"]) <= parse_utc(base["stop_time"]) <= manifest.finished_at
    body = manifest.body
    assert body["compression"] == {"method": "zstd", "level": 1}
    assert body["encryption"]["key_id"] == sandbox.fingerprint and body["encryption"]["mode"] == "public_key"
    assert set(body["tools"]) >= {"pg_basebackup", "pg_waldump", "zstd", "gpg"}
    assert body["producer"] == {"dag_id": "test", "run_id": "manual"}


def test_every_payload_is_stored_with_the_sha256_of_its_stored_bytes(
    taken: dict[str, Any], primary_store: Store
) -> None:
    result = taken["result"]
    manifest = find_set(primary_store, CLUSTER, BackupKind.BASE, result["backup_set_id"]).manifest
    assert {p.name: p.format for p in manifest.payloads} == {
        "base.tar.zst.gpg": "pg_basebackup-base-tar",
        "pg_wal.tar.zst.gpg": "pg_basebackup-wal-tar",
        "backup_manifest.zst.gpg": "pg_backup_manifest",
    }
    for payload in manifest.payloads:
        stored = primary_store.get_bytes(key_for(CLUSTER, BackupKind.BASE, result["backup_set_id"], payload.name))
        assert (len(stored), hashlib.sha256(stored).hexdigest()) == (payload.size_bytes, payload.sha256)
        assert stored.startswith(b"\x84") or stored.startswith(b"\x85")  # an OpenPGP public-key packet: encrypted
        assert payload.plain_size_bytes and payload.plain_size_bytes > payload.size_bytes
    assert [p["name"] for p in result["payloads"]] == [p.name for p in manifest.payloads]


@pytest.mark.pg_majors(15, 18)
def test_the_payloads_decrypt_to_tars_that_pg_verifybackup_accepts(
    taken: dict[str, Any], primary_store: Store, restore_key: Any, sandbox: Any, tmp_path: Path
) -> None:
    result = taken["result"]
    manifest = find_set(primary_store, CLUSTER, BackupKind.BASE, result["backup_set_id"]).manifest
    tars = tmp_path / "tars"
    tars.mkdir(mode=0o700)
    for payload in manifest.payloads:
        encrypted = tmp_path / payload.name
        download_verified(
            primary_store, key_for(CLUSTER, BackupKind.BASE, result["backup_set_id"], payload.name), payload, encrypted
        )
        plain = tars / PLAIN_NAMES[payload.name]
        decrypt_file(encrypted, payload.name, restore_key, plain, staging_dir=tmp_path)
        assert hashlib.sha256(plain.read_bytes()).hexdigest() == payload.plain_sha256
    # 15 extracts the tars and verifies the copy; 18 reads them in place (only pg_wal.tar is extracted).
    pg = data_install(sandbox.pg_major)
    verification = verify_tar_backup(pg, tars, tmp_path / "scratch")
    assert (
        verification.verified_by.startswith(f"pg_verifybackup {pg.major}.") and verification.extracted_bytes > 16 << 20
    )
    assert not (tmp_path / "scratch" / "extract").exists()
    pg_manifest = parse_backup_manifest((tars / "backup_manifest").read_bytes(), where="decrypted")
    assert format_lsn(pg_manifest.start_lsn) == result["base_backup"]["start_lsn"]


def test_the_run_leaves_nothing_in_staging_and_returns_plain_data_without_secrets(
    taken: dict[str, Any], sandbox: Any
) -> None:
    assert leftovers(taken["staging"]) == []
    result = taken["result"]
    text = json.dumps(result)
    assert not [secret for secret in sandbox.secrets.values() if secret in text]
    assert set(result["seconds"]) == {"preflight", "pg_basebackup", "verify", "upload", "readback", "total"}
    assert result["sizes"]["plain_bytes"] == sum(p["plain_size_bytes"] for p in result["payloads"])
    assert result["sizes"]["cluster_bytes"] > 0


def assert_failed_cleanly(exc: HmsDrError, store: Store, cluster: str, staging: Path) -> None:
    assert "\n" not in exc.message, exc.message
    assert stored_under(store, cluster) == [], "a failed run left objects in the store"
    assert MANIFEST_NAME not in " ".join(stored_under(store, cluster))
    assert leftovers(staging) == [], "a failed run left files in staging"


def test_a_role_without_replication_is_refused_before_anything_is_copied(
    sandbox: Any, primary_store: Store, encryption_key: EncryptionKey, tmp_path: Path
) -> None:
    cluster = f"{CLUSTER}-norepl"
    with pytest.raises(ReplicationNotPermitted) as caught:
        take_base_backup(
            connection(sandbox.dsn("hms_backup")),
            primary_store,
            cluster,
            encryption_key=encryption_key,
            staging_dir=tmp_path / "staging",
            zstd_level=1,
        )
    assert caught.value.message.startswith("role hms_backup on 127.0.0.1:")
    assert "lacks the REPLICATION attribute" in caught.value.message and "ALTER ROLE hms_backup REPLICATION" in str(
        caught.value.hint
    )
    assert_failed_cleanly(caught.value, primary_store, cluster, tmp_path / "staging")


def test_a_wrong_password_fails_in_one_line_that_does_not_show_it(
    replica: ConnectionInfo, primary_store: Store, encryption_key: EncryptionKey, tmp_path: Path
) -> None:
    cluster = f"{CLUSTER}-badpw"
    wrong = ConnectionInfo(
        replica.host, replica.port, replica.user, replica.dbname, password="not-the-password-" + uuid.uuid4().hex
    )
    with pytest.raises(DatabaseUnavailable) as caught:
        take_base_backup(
            wrong, primary_store, cluster, encryption_key=encryption_key, staging_dir=tmp_path / "staging", zstd_level=1
        )
    assert "password authentication failed" in caught.value.message and "hms_replica" in caught.value.message
    assert str(wrong.password) not in str(caught.value)
    assert_failed_cleanly(caught.value, primary_store, cluster, tmp_path / "staging")


@pytest.fixture(scope="module")
def refused_by_hba(scratch_cluster: str) -> Iterator[ConnectionInfo]:
    """A REPLICATION role whose replication connections pg_hba.conf rejects (normal logins pass)."""
    import psycopg

    password = uuid.uuid4().hex
    with psycopg.connect(scratch_cluster, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE bb_refused LOGIN REPLICATION PASSWORD '{password}'")
        row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None
        hba = Path(row[0])
        original = hba.read_text()
        hba.write_text("host replication bb_refused 127.0.0.1/32 reject\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield connection(scratch_cluster, user="bb_refused", password=password)
    finally:
        hba.write_text(original)
        with psycopg.connect(scratch_cluster, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


@pytest.mark.parametrize("method", list(BaseBackupMethod), ids=lambda m: m.value)
def test_pg_basebackup_refused_by_the_server_fails_in_one_line_and_leaves_nothing(
    refused_by_hba: ConnectionInfo,
    primary_store: Store,
    encryption_key: EncryptionKey,
    tmp_path: Path,
    method: BaseBackupMethod,
) -> None:
    cluster = f"{CLUSTER}-hba-{method.value}"
    with pytest.raises(HmsDrError) as caught:
        take_base_backup(
            refused_by_hba,
            primary_store,
            cluster,
            encryption_key=encryption_key,
            staging_dir=tmp_path / "staging",
            zstd_level=1,
            method=method,
        )
    if method is BaseBackupMethod.STAGED:
        assert isinstance(caught.value, ToolFailed)
        assert caught.value.tool == "pg_basebackup" and caught.value.exit_code == 1
    else:  # refused already when the streamed method opens the connection that holds the WAL
        assert isinstance(caught.value, PreflightFailed) and "to hold the backup's WAL" in caught.value.message
    assert "pg_hba.conf rejects replication connection" in caught.value.message and "bb_refused" in caught.value.message
    assert "pg_hba.conf" in str(caught.value.hint)
    assert_failed_cleanly(caught.value, primary_store, cluster, tmp_path / "staging")


def pg_basebackups_of_this_process() -> list[int]:
    """The pids of every pg_basebackup this test process started (the staged method's forked WAL
    receiver is pg_basebackup's child: found through its parent)."""
    children: dict[int, list[int]] = {}
    names: dict[int, bytes] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            names[int(proc.name)] = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        if names.get(pid, b"").endswith(b"pg_basebackup"):
            found.append(pid)
            todo.extend(children.get(pid, []))
    return sorted(found)


def pg_basebackup_copying(timeout_s: float = 30) -> int:
    """The pid of the first pg_basebackup of this process, once it has copied for a second."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = pg_basebackups_of_this_process()
        if found:
            time.sleep(1)  # at 32 kB/s, a few dozen kB into the copy: mid-stream, far from its end
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no pg_basebackup started within {timeout_s} s")


@pytest.mark.parametrize("method", list(BaseBackupMethod), ids=lambda m: m.value)
def test_a_pg_basebackup_killed_mid_copy_fails_in_one_line_and_leaves_nothing(
    scratch_cluster: str, primary_store: Store, encryption_key: EncryptionKey, tmp_path: Path, method: BaseBackupMethod
) -> None:
    cluster = f"{CLUSTER}-killed-{method.value}"
    staging = tmp_path / "staging"
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            # 32 kB/s, pg_basebackup's slowest: the copy is still running when it is killed.
            take_base_backup(
                connection(scratch_cluster),
                primary_store,
                cluster,
                encryption_key=encryption_key,
                staging_dir=staging,
                zstd_level=1,
                max_rate_kib_s=32,
                method=method,
            )
        except BaseException as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    os.kill(pg_basebackup_copying(), signal.SIGKILL)
    runner.join(timeout=60)
    assert not runner.is_alive(), "take_base_backup did not return after pg_basebackup was killed"
    error = outcome.get("error")
    assert isinstance(error, ToolFailed), error
    assert error.message == "pg_basebackup was killed: SIGKILL" and "interrupted" in str(error.hint)
    assert pg_basebackups_of_this_process() == [], "a process pg_basebackup started outlived it"
    assert_failed_cleanly(error, primary_store, cluster, staging)


def test_a_key_other_than_the_policys_is_refused_before_anything_is_copied(
    sandbox: Any, replica: ConnectionInfo, primary_store: Store, tmp_path: Path
) -> None:
    cluster = f"{CLUSTER}-key"
    wrong = EncryptionKey(EncryptionMode.PUBLIC_KEY, "A" * 40, public_key=sandbox.secrets.gpg_public_key)
    with pytest.raises(EncryptionFailed, match=r"but the policy's encryption\.key_id is A{40}") as caught:
        take_base_backup(
            replica, primary_store, cluster, encryption_key=wrong, staging_dir=tmp_path / "staging", zstd_level=1
        )
    assert_failed_cleanly(caught.value, primary_store, cluster, tmp_path / "staging")


@pytest.mark.parametrize(
    "method, bound",
    [
        (BaseBackupMethod.STREAMED, {"staging_limit_bytes": 1 << 60}),
        (BaseBackupMethod.STAGED, {"staging_space_ratio": 1e9}),
    ],
    ids=["streamed", "staged"],
)
def test_too_little_staging_space_is_refused_before_anything_is_copied(
    replica: ConnectionInfo,
    primary_store: Store,
    encryption_key: EncryptionKey,
    tmp_path: Path,
    method: BaseBackupMethod,
    bound: dict[str, Any],
) -> None:
    cluster = f"{CLUSTER}-space-{method.value}"
    with pytest.raises(
        StagingSpaceShort, match=f"not enough free space in base backup staging {tmp_path / 'staging'}: "
    ):
        take_base_backup(
            replica,
            primary_store,
            cluster,
            encryption_key=encryption_key,
            staging_dir=tmp_path / "staging",
            zstd_level=1,
            method=method,
            **bound,
        )
    assert stored_under(primary_store, cluster) == [] and leftovers(tmp_path / "staging") == []


@pytest.fixture(scope="module")
def scratch_tars(scratch_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pg_basebackup's tar output of the scratch cluster, untouched: tests copy what they tamper with."""
    tars = tmp_path_factory.mktemp("scratch-backup") / "tars"
    run_pg_basebackup(connection(scratch_cluster), PG15(), tars, label="hms-dr-verify-test")
    return tars


@pytest.fixture()
def extracted(scratch_tars: Path, tmp_path: Path) -> Path:
    extract = tmp_path / "extract"
    assert extract_tar_backup(scratch_tars, extract) > 0
    return extract


def test_an_untouched_extract_passes(scratch_tars: Path, extracted: Path) -> None:
    run_pg_verifybackup(PG15(), scratch_tars / "backup_manifest", extracted)


def test_a_truncated_file_fails_verification_naming_it(scratch_tars: Path, extracted: Path) -> None:
    victim = max((p for p in (extracted / "base").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    relative = victim.relative_to(extracted).as_posix()
    with victim.open("r+b") as handle:
        handle.truncate(victim.stat().st_size // 2)
    with pytest.raises(BackupVerificationFailed) as caught:
        run_pg_verifybackup(PG15(), scratch_tars / "backup_manifest", extracted)
    assert f'"{relative}" has size' in caught.value.message and "in the manifest" in caught.value.message
    assert caught.value.message.startswith(f"pg_verifybackup rejected the base backup in {extracted}: ")
    assert "\n" not in caught.value.message


def test_an_edited_backup_manifest_fails_verification(scratch_tars: Path, extracted: Path, tmp_path: Path) -> None:
    edited = tmp_path / "backup_manifest"
    edited.write_bytes((scratch_tars / "backup_manifest").read_bytes().replace(b'"Size": 3,', b'"Size": 4,', 1))
    with pytest.raises(BackupVerificationFailed, match="manifest checksum mismatch"):
        run_pg_verifybackup(PG15(), edited, extracted)


def test_missing_wal_fails_verification(scratch_tars: Path, extracted: Path) -> None:
    for segment in (extracted / "pg_wal").glob("0000*"):
        segment.unlink()
    with pytest.raises(BackupVerificationFailed, match="could not find any WAL file"):
        run_pg_verifybackup(PG15(), scratch_tars / "backup_manifest", extracted)


def test_a_truncated_tar_fails_verification_and_its_extract_is_removed(scratch_tars: Path, tmp_path: Path) -> None:
    tars = tmp_path / "tars"
    tars.mkdir()
    for source in scratch_tars.iterdir():
        data = source.read_bytes()
        (tars / source.name).write_bytes(data[: len(data) // 3] if source.name == "base.tar" else data)
    with pytest.raises(BackupVerificationFailed):
        verify_tar_backup(PG15(), tars, tmp_path / "scratch")
    assert leftovers(tmp_path / "scratch") == []


def hand_made_base_set(store: Store, cluster: str, finished_at: datetime) -> str:
    backup_set_id = finished_at.strftime("%Y%m%dT%H%M%SZ")
    data = os.urandom(1024)
    stored = store.put_bytes(key_for(cluster, BackupKind.BASE, backup_set_id, "base.tar.zst.gpg"), data)
    payload = Payload("base.tar.zst.gpg", stored.size_bytes, stored.sha256, "pg_basebackup-base-tar")
    publish_set(
        store,
        kind=BackupKind.BASE,
        cluster=cluster,
        backup_set_id=backup_set_id,
        started_at=finished_at - timedelta(minutes=30),
        finished_at=finished_at,
        payloads=[payload],
        extra={"base_backup": {"start_wal_file": "000000010000000000000002"}},
    )
    return backup_set_id


def test_retention_keeps_the_newest_four_base_backup_sets(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    store = open_store(root.as_uri())
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [hand_made_base_set(store, CLUSTER, now - timedelta(weeks=w, hours=1)) for w in range(6)]  # newest first
    orphan_id = (now - timedelta(days=3)).strftime("%Y%m%dT%H%M%SZ")
    orphan = key_for(CLUSTER, BackupKind.BASE, orphan_id, "base.tar.zst.gpg")
    store.put_bytes(orphan, b"left by a killed run")  # written now: a day old two days from now
    later = now + timedelta(days=2)
    tiers = RetentionTiers(base_backups_keep=4, orphan_max_age=timedelta(hours=24))
    report = expire_by_tiers(store, CLUSTER, tiers, later, offsite=False, kinds=(BackupKind.BASE,))["base"]
    assert report.kept == 4
    assert sorted(report.expired) == sorted([*ids[4:], orphan_id])
    assert [s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.BASE).sets] == sorted(ids[:4])
    for gone in ids[4:]:
        assert store.list(key_for(CLUSTER, BackupKind.BASE, gone)) == []
    assert not store.exists(orphan)
    again = expire_by_tiers(store, CLUSTER, tiers, later, offsite=False, kinds=(BackupKind.BASE,))["base"]
    assert again.expired == [] and again.kept == 4
