"""Point-in-time recovery on real clusters, a real S3 protocol store (moto) and gpg.

PostgreSQL's own recovery-target scenario (src/test/recovery/t/003_recovery_targets.pl): a
base backup of 1,000 rows, then batches of 1,000 rows each marked by a transaction id, a time, a
restore point and an LSN; recovering to each mark gives exactly 1,000 ... 5,000 rows, and
``latest`` all 6,000. Then the failures: a restore point that does not exist, a tampered base
backup, a missing and a corrupted WAL segment, and a promotion that ``latest`` must follow.

The source is a small cluster of this module's own (archiving into its own spool) so that the
sandbox's database and WAL are left alone; its sets go to the sandbox store under a prefix of
their own.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from archiving import Archiver
from workdirs import state_root

from hms_dr.catalog import find_set, key_for
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home
from hms_dr.decrypt import decrypt_file
from hms_dr.errors import (
    BackupVerificationFailed,
    ChecksumMismatch,
    NoBackupForTarget,
    PreflightFailed,
    RecoveryFailed,
    WalMissing,
)
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.physical.recovery import recover
from hms_dr.physical.targets import parse_recovery_target
from hms_dr.policy import EncryptionMode
from hms_dr.publish import publish_set
from hms_dr.streams import Pipeline, Stage
from hms_dr.wal.ship import ship_spool
from hms_sandbox.cluster import LocalCluster, free_port, prepare_server_dir, run_server_tool
from hms_sandbox.lifecycle import archive_command

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# Under the repository like the sandboxes: the postgres OS user must traverse every parent.
TEST_STATE_DIR = state_root()
ARCHIVE_SCRIPT = REPO_ROOT / "include" / "postgres" / "archive_wal.sh"


@dataclass
class Source:
    """The cluster being protected, its spool, and what the scenario recorded."""

    cluster: LocalCluster
    password: str
    spool: Path
    base: Path
    prefix: str
    encryption_key: EncryptionKey
    marks: dict[str, str] = field(default_factory=dict)
    base_backup: dict[str, Any] = field(default_factory=dict)

    def conn(self) -> ConnectionInfo:
        return ConnectionInfo("127.0.0.1", self.cluster.port, "postgres", "postgres", password=self.password)

    def sql(self, query: str, *params: Any) -> Any:
        import psycopg

        with psycopg.connect(self.cluster.dsn("postgres", self.password), autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]

    def switch_and_ship(self, store: Any, staging: Path, dsn: str | None = None) -> str:
        """Close the current segment, wait until it is spooled, and ship the spool to the store."""
        archiver = Archiver(self.cluster.dsn("postgres", self.password), self.spool, self.cluster.log_file)
        name = archiver.switch(dsn)
        archiver.wait_spooled([name])
        ship_spool(
            store,
            self.prefix,
            self.spool,
            encryption_key=self.encryption_key,
            zstd_level=3,
            staging_dir=staging,
            remove_from_spool=True,
        )
        return name


@pytest.fixture(scope="module")
def staging() -> Iterator[Path]:
    path = TEST_STATE_DIR / f"pitr-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    path.chmod(0o711)
    (path / "work").mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def source(sandbox: Any, staging: Path, primary_store: Any) -> Iterator[Source]:
    """The scenario: batch 1 and the base backup, then the marked batches 2..5 and batch 6, shipped."""
    spool = staging / "spool"
    prepare_server_dir(spool, 0o700)
    cluster = LocalCluster(
        staging / "source" / "data",
        free_port(),
        staging / "source" / "log" / "server.log",
        staging / "source" / "sockets",
    )
    password = secrets.token_urlsafe(18)
    # A copy the server's OS user can run (run as root it may not traverse the clone).
    script = staging / ARCHIVE_SCRIPT.name
    shutil.copy2(ARCHIVE_SCRIPT, script)
    cluster.init(
        password,
        data_checksums=True,
        conf={
            "archive_mode": "on",
            "archive_command": archive_command(script, spool),
            "fsync": "off",
            "wal_level": "replica",
        },
    )
    cluster.start()
    key = EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)
    src = Source(cluster, password, spool, staging, f"pitr-{uuid.uuid4().hex[:8]}", key)
    try:
        src.sql("CREATE TABLE tab_int AS SELECT generate_series(1, 1000) AS a")
        src.base_backup = take_base_backup(
            src.conn(), primary_store, src.prefix, encryption_key=key, staging_dir=staging / "work", zstd_level=3
        )
        import psycopg

        with psycopg.connect(cluster.dsn("postgres", password), autocommit=True) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO tab_int SELECT generate_series(1001, 2000)")
                src.marks["xid"] = str(conn.execute("SELECT pg_current_xact_id()").fetchone()[0])  # type: ignore[index]
            conn.execute("SELECT pg_switch_wal()")  # the marks spread over three segments: gaps have a middle
            conn.execute("INSERT INTO tab_int SELECT generate_series(2001, 3000)")
            src.marks["time"] = conn.execute("SELECT now()").fetchone()[0].isoformat()  # type: ignore[index]
            time.sleep(0.05)
            conn.execute("INSERT INTO tab_int SELECT generate_series(3001, 4000)")
            conn.execute("SELECT pg_create_restore_point('pitr_after_batch_4')")
            src.marks["name"] = "pitr_after_batch_4"
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("INSERT INTO tab_int SELECT generate_series(4001, 5000)")
            src.marks["lsn"] = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
            conn.execute("INSERT INTO tab_int SELECT generate_series(5001, 6000)")
            src.marks["tab_int_file"] = str(conn.execute("SELECT pg_relation_filepath('tab_int')").fetchone()[0])  # type: ignore[index]
        src.switch_and_ship(primary_store, staging / "work")
        yield src
    finally:
        cluster.stop("immediate")
        for obj in primary_store.list(f"{src.prefix}"):  # this module's sets and their tampered copies
            primary_store.delete(obj.key)


@dataclass
class Recovered:
    result: dict[str, Any]
    cluster: LocalCluster
    password: str

    def count(self) -> int:
        import psycopg

        with psycopg.connect(self.cluster.dsn("postgres", self.password), autocommit=True) as conn:
            return int(conn.execute("SELECT count(*) FROM tab_int").fetchone()[0])  # type: ignore[index]


@pytest.fixture
def run_recovery(source: Source, primary_store: Any, restore_key: Any) -> Iterator[Callable[..., Recovered]]:
    """recover() into a fresh directory; every server started is stopped and removed afterwards."""
    made: list[LocalCluster] = []

    def run(
        kind: str, value: str | None = None, *, prefix: str | None = None, name: str | None = None, **kwargs: Any
    ) -> Recovered:
        home = source.base / "recovered" / (name or f"{kind}-{uuid.uuid4().hex[:6]}")
        data_dir = home / "data"
        cluster = LocalCluster(data_dir, free_port(), home / "log" / "data.log", home / "sockets")
        made.append(cluster)
        result = recover(
            primary_store,
            prefix or source.prefix,
            parse_recovery_target(kind, value),
            data_dir=data_dir,
            port=cluster.port,
            decryption_key=restore_key,
            staging_dir=source.base / "work",
            **kwargs,
        )
        return Recovered(result, cluster, source.password)

    yield run
    for cluster in made:
        cluster.stop("immediate")
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


@pytest.mark.parametrize(
    ("kind", "rows"),
    [("immediate", 1000), ("xid", 2000), ("time", 3000), ("name", 4000), ("lsn", 5000), ("latest", 6000)],
)
def test_each_recovery_target_yields_exactly_its_rows(
    source: Source, run_recovery: Callable[..., Recovered], kind: str, rows: int
) -> None:
    recovered = run_recovery(kind, source.marks.get(kind))
    assert recovered.count() == rows
    result = recovered.result
    assert result["backup_set_id"] == source.base_backup["backup_set_id"]
    assert result["timeline"] == 2 and result["recovered_through_timeline"] == 1
    assert result["recovery_end_lsn"] and result["seconds"]["total"] > 0
    assert result["wal"]["failures"] == [] and result["restored"]["verified_by"] == "pg_verifybackup"
    if kind != "immediate":
        assert result["wal"]["files_served"] >= 1
    json.dumps(result)  # plain data, fits XCom
    if kind == "latest":
        assert result["wal"]["files_fetched_ahead"] >= 1  # decrypted while the previous file was replayed
        assert_a_new_promoted_cluster_that_never_archives(recovered)


def assert_a_new_promoted_cluster_that_never_archives(recovered: Recovered) -> None:
    import psycopg

    with psycopg.connect(recovered.cluster.dsn("postgres", recovered.password), autocommit=True) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'listen_addresses', 'restore_command', 'port')"
            ).fetchall()
        )
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False  # type: ignore[index]
    assert settings["archive_mode"] == "off" and settings["listen_addresses"] == "127.0.0.1"
    assert settings["port"] == str(recovered.cluster.port)
    data_dir = recovered.cluster.data_dir
    hba_rules = [
        line
        for line in (data_dir / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert hba_rules and not [rule for rule in hba_rules if "trust" in rule], hba_rules
    assert not (data_dir / "recovery.signal").exists()
    assert "restore_command" not in (data_dir / "postgresql.auto.conf").read_text()


def test_a_restore_point_that_does_not_exist_fails_clearly_without_promoting(
    source: Source, run_recovery: Callable[..., Recovered]
) -> None:
    with pytest.raises(RecoveryFailed, match="recovery ended before configured recovery target was reached") as caught:
        run_recovery("name", "no_such_restore_point", name="no-such-point")
    data_dir = source.base / "recovered" / "no-such-point" / "data"
    assert not (data_dir / "postmaster.pid").exists()
    assert not list((data_dir / "pg_wal").glob("*.history")), "a failed recovery must not have promoted"
    assert "\n" in str(caught.value) and str(caught.value).count("\n") == 1  # one line, plus the HINT


def test_a_non_empty_data_directory_is_refused_before_anything_is_touched(
    source: Source, primary_store: Any, restore_key: Any
) -> None:
    data_dir = source.base / "occupied"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("15\n")
    with pytest.raises(PreflightFailed, match="is not empty"):
        recover(
            primary_store,
            source.prefix,
            parse_recovery_target("latest"),
            data_dir=data_dir,
            port=free_port(),
            decryption_key=restore_key,
            staging_dir=source.base / "work",
        )
    assert [p.name for p in data_dir.iterdir()] == ["PG_VERSION"]


def test_targets_outside_the_archive_are_refused(source: Source, primary_store: Any, restore_key: Any) -> None:
    def attempt(kind: str, value: str) -> None:
        recover(
            primary_store,
            source.prefix,
            parse_recovery_target(kind, value),
            data_dir=source.base / "never",
            port=free_port(),
            decryption_key=restore_key,
            staging_dir=source.base / "work",
        )

    with pytest.raises(NoBackupForTarget, match=r"is before base backup set .* consistent only from"):
        attempt("time", "2020-01-01T00:00:00Z")
    with pytest.raises(NoBackupForTarget, match="is after the newest archived WAL"):
        attempt("time", "2999-01-01T00:00:00Z")
    with pytest.raises(NoBackupForTarget, match="is after the newest archived WAL"):
        attempt("lsn", "FF/0")
    assert not (source.base / "never").exists()


# -- tampering ---------------------------------------------------------------------------------


def copy_prefix(store: Any, source_prefix: str, suffix: str) -> str:
    """Every object of ``source_prefix`` copied to a new prefix, which is returned."""
    target = f"{source_prefix}-{suffix}"
    for obj in store.list(f"{source_prefix}/"):
        store.put_bytes(target + obj.key[len(source_prefix) :], store.get_bytes(obj.key))
    return target


def republish_base(
    store: Any,
    prefix: str,
    backup_set_id: str,
    payload_format: str,
    edit: Callable[[Path], None],
    key: EncryptionKey,
    restore_key: Any,
    work: Path,
) -> None:
    """Re-encrypt one payload of a base set after ``edit`` changed its plain bytes, and publish the
    set again with checksums that match: damage only PostgreSQL's own checks can see."""
    import hashlib

    backup_set = find_set(store, prefix, BackupKind.BASE, backup_set_id)
    manifest = backup_set.manifest
    payload = next(p for p in manifest.payloads if p.format == payload_format)
    stored_key = key_for(prefix, BackupKind.BASE, backup_set_id, payload.name)
    encrypted, plain = work / "tamper.gpg", work / "tamper.plain"
    encrypted.write_bytes(store.get_bytes(stored_key))
    decrypt_file(encrypted, payload.name, restore_key, plain, staging_dir=work)
    edit(plain)
    with gpg_home(work) as home, plain.open("rb") as src:
        check_encryption_key(home, key)
        stages = [Stage("zstd", ["zstd", "-q", "-c", "-3"]), encrypt_stage(home, key)]
        chunks = []
        with Pipeline(stages, source=src) as pipeline:
            while chunk := pipeline.output.read(1 << 20):
                chunks.append(chunk)
        data = b"".join(chunks)
    new_payload = Payload(
        payload.name,
        len(data),
        hashlib.sha256(data).hexdigest(),
        payload.format,
        plain.stat().st_size,
        hashlib.sha256(plain.read_bytes()).hexdigest(),
    )
    store.delete(key_for(prefix, BackupKind.BASE, backup_set_id, MANIFEST_NAME))
    store.put_bytes(stored_key, data, overwrite=True)
    payloads = [new_payload if p.name == payload.name else p for p in manifest.payloads]
    extra = {
        k: v
        for k, v in manifest.body.items()
        if k not in {"format_version", "kind", "backup_set_id", "cluster", "started_at", "finished_at", "payloads"}
    }
    publish_set(
        store,
        kind=BackupKind.BASE,
        cluster=prefix,
        backup_set_id=backup_set_id,
        started_at=manifest.started_at,
        finished_at=manifest.finished_at,
        payloads=payloads,
        extra=extra,
    )
    encrypted.unlink(missing_ok=True)
    plain.unlink(missing_ok=True)


def test_a_truncated_stored_payload_is_caught_before_decrypting(
    source: Source, primary_store: Any, run_recovery: Callable[..., Recovered]
) -> None:
    prefix = copy_prefix(primary_store, source.prefix, "truncated")
    set_id = source.base_backup["backup_set_id"]
    key = key_for(prefix, BackupKind.BASE, set_id, "base.tar.zst.gpg")
    primary_store.put_bytes(key, primary_store.get_bytes(key)[:-4096], overwrite=True)
    with pytest.raises(ChecksumMismatch, match=r"base\.tar\.zst\.gpg is \d+ bytes, its manifest says \d+ \(truncated"):
        run_recovery("latest", prefix=prefix)


def test_a_truncated_file_inside_the_base_backup_is_named_by_pg_verifybackup(
    source: Source, primary_store: Any, restore_key: Any, run_recovery: Callable[..., Recovered]
) -> None:
    prefix = copy_prefix(primary_store, source.prefix, "shortfile")
    victim = source.marks["tab_int_file"]

    def truncate_member(plain: Path) -> None:
        edited = plain.with_suffix(".edited")
        with tarfile.open(plain) as original, tarfile.open(edited, "w", format=tarfile.GNU_FORMAT) as out:
            for member in original:
                handle = original.extractfile(member) if member.isfile() else None
                if member.name == victim:
                    member.size -= 8192
                    out.addfile(member, _limited(handle, member.size))
                else:
                    out.addfile(member, handle)
        edited.replace(plain)

    republish_base(
        primary_store,
        prefix,
        source.base_backup["backup_set_id"],
        "pg_basebackup-base-tar",
        truncate_member,
        source.encryption_key,
        restore_key,
        source.base / "work",
    )
    with pytest.raises(BackupVerificationFailed, match=f'"{victim}" has size'):
        run_recovery("latest", prefix=prefix, name="shortfile")
    assert list((source.base / "recovered" / "shortfile" / "data").iterdir()) == [], "no server ran: nothing is left"


def test_an_edited_backup_manifest_is_caught_by_pg_verifybackup(
    source: Source, primary_store: Any, restore_key: Any, run_recovery: Callable[..., Recovered]
) -> None:
    prefix = copy_prefix(primary_store, source.prefix, "manifest")
    victim = source.marks["tab_int_file"]

    def edit_size(plain: Path) -> None:
        text = plain.read_text()
        start = text.index(f'"Path": "{victim}"')
        size_at = text.index('"Size": ', start) + len('"Size": ')
        end = text.index(",", size_at)
        plain.write_text(text[:size_at] + str(int(text[size_at:end]) + 8192) + text[end:])

    republish_base(
        primary_store,
        prefix,
        source.base_backup["backup_set_id"],
        "pg_backup_manifest",
        edit_size,
        source.encryption_key,
        restore_key,
        source.base / "work",
    )
    with pytest.raises(BackupVerificationFailed, match=r"pg_verifybackup .*manifest checksum mismatch"):
        run_recovery("latest", prefix=prefix)


def _stored_segments_after_backup(store: Any, prefix: str, stop_wal_file: str) -> list[str]:
    from hms_dr.wal.ship import stored_wal_names

    return sorted(n for n in stored_wal_names(store, prefix) if len(n) == 24 and n > stop_wal_file)


def test_a_missing_wal_segment_is_refused_before_anything_is_touched(
    source: Source, primary_store: Any, run_recovery: Callable[..., Recovered]
) -> None:
    prefix = copy_prefix(primary_store, source.prefix, "gap")
    segments = _stored_segments_after_backup(primary_store, prefix, source.base_backup["base_backup"]["stop_wal_file"])
    assert len(segments) >= 2, segments
    missing = segments[0]
    for obj in primary_store.list(key_for(prefix, BackupKind.WAL, missing)):
        primary_store.delete(obj.key)
    with pytest.raises(WalMissing, match=f"WAL file {missing} is missing from the store .*'latest' would stop there"):
        run_recovery("latest", prefix=prefix, name="gap")
    assert not (source.base / "recovered" / "gap" / "data").exists()


def test_a_corrupted_wal_segment_aborts_recovery_naming_it_and_never_promotes(
    source: Source, primary_store: Any, run_recovery: Callable[..., Recovered]
) -> None:
    prefix = copy_prefix(primary_store, source.prefix, "corrupt")
    segments = _stored_segments_after_backup(primary_store, prefix, source.base_backup["base_backup"]["stop_wal_file"])
    corrupted = segments[0]
    backup_set = find_set(primary_store, prefix, BackupKind.WAL, corrupted)
    key = key_for(prefix, BackupKind.WAL, corrupted, backup_set.manifest.payloads[0].name)
    data = bytearray(primary_store.get_bytes(key))
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the sha256 can tell
    primary_store.put_bytes(key, bytes(data), overwrite=True)
    with pytest.raises(RecoveryFailed) as caught:
        run_recovery("latest", prefix=prefix, name="corrupt")
    message = str(caught.value)
    assert f'could not restore file "{corrupted}" from archive' in message, message
    assert f"{corrupted}: " in message and "sha256" in message, message
    data_dir = source.base / "recovered" / "corrupt" / "data"
    log_text = (source.base / "recovered" / "corrupt" / "log" / "data.log").read_text()
    assert "exit code 255" in log_text and "hms-dr walfetch" in log_text
    assert "database system is ready to accept connections" not in log_text
    assert not list((data_dir / "pg_wal").glob("*.history")), "a failed recovery must not have promoted"


# -- timelines (last: the promotion adds timeline 2 to this module's archive) -------------------


def test_latest_follows_a_promotion_onto_the_new_timeline(
    source: Source, primary_store: Any, run_recovery: Callable[..., Recovered]
) -> None:
    standby_home = source.base / "standby"
    standby = LocalCluster(
        standby_home / "data", free_port(), standby_home / "log" / "server.log", standby_home / "sockets"
    )
    for directory in (standby.data_dir, standby.log_file.parent, standby.socket_directory):
        prepare_server_dir(directory, 0o700)
    env = {"PGPASSWORD": source.password}
    run_server_tool(
        [
            source.cluster.pg.program("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(source.cluster.port),
            "-U",
            "postgres",
            "-D",
            str(standby.data_dir),
            "-X",
            "stream",
            "--no-password",
        ],
        env=env,
        timeout_s=120,
    )
    with (standby.data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"port = {standby.port}\nunix_socket_directories = '{standby.socket_directory}'\n")
    run_server_tool(["touch", str(standby.data_dir / "standby.signal")])
    standby.start()
    try:
        run_server_tool([standby.pg.program("pg_ctl"), "-D", str(standby.data_dir), "promote", "-w"], timeout_s=60)
        import psycopg

        dsn = standby.dsn("postgres", source.password)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO tab_int SELECT generate_series(6001, 7000)")
        source.switch_and_ship(primary_store, source.base / "work", dsn=dsn)
    finally:
        standby.stop("immediate")
    assert primary_store.exists(key_for(source.prefix, BackupKind.WAL, "00000002.history", MANIFEST_NAME))

    recovered = run_recovery("latest")
    assert recovered.count() == 7000
    assert recovered.result["timeline"] == 3 and recovered.result["recovered_through_timeline"] == 2
    assert recovered.result["wal_path"]["timelines"].startswith("1 -> 2")


def _limited(handle: Any, size: int) -> Any:
    import io

    return io.BytesIO(handle.read()[:size])


def test_walfetch_aborts_recovery_when_its_source_is_gone(tmp_path: Path) -> None:
    """Exit 255 (above 125: PostgreSQL aborts recovery), never 1 (end of archive)."""
    import sys

    from hms_dr.physical import walfetch

    done = subprocess.run(
        [sys.executable, "-I", walfetch.__file__, str(tmp_path), "000000010000000000000003", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 255 and "does not answer" in done.stderr
    assert not (tmp_path / "x").exists()
