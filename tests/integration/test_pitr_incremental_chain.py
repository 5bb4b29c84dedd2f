"""Point-in-time recovery from a chain of incremental base backups on a real PostgreSQL 18 cluster.

A full backup and two incrementals with rows inserted, updated and deleted between them and after
the last; recovery to a time after the last incremental gives exactly the rows of that moment
(counts and a content hash of every changed table). Then the broken chains: a missing link, a
link of another cluster, a corrupted link (stored bytes that differ from their sha256) and a
tampered one (republished with matching sha256s, but a file differs from PostgreSQL's
backup_manifest) each fail before anything is written into the data directory: it stays empty
(or absent) and nothing is left in staging or beside the data directory.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from archiving import Archiver, switch_wal
from incremental_sets import TakenSet, take_base_set
from test_pitr import copy_prefix, republish_base
from workdirs import state_root

from hms_dr.catalog import key_for
from hms_dr.crypto import EncryptionKey
from hms_dr.errors import BackupChainBroken, BackupVerificationFailed, ChecksumMismatch
from hms_dr.manifest import MANIFEST_NAME, BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.recovery import check_recovery, recover
from hms_dr.physical.targets import parse_recovery_target
from hms_dr.policy import EncryptionMode
from hms_dr.wal.ship import ship_spool
from hms_sandbox.cluster import LocalCluster, free_port, prepare_server_dir
from hms_sandbox.lifecycle import archive_command

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
ARCHIVE_SCRIPT = REPO_ROOT / "include" / "postgres" / "archive_wal.sh"
TABLES = ("patients", "visits")
# Every row of a table in one hash: equal hashes mean the same rows with the same values.
CONTENT = "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t"


@dataclass
class Chain:
    """The source cluster, its chain of sets, and what its tables held at the recovery target."""

    cluster: LocalCluster
    password: str
    base: Path
    prefix: str
    encryption_key: EncryptionKey
    sets: list[TakenSet] = field(default_factory=list)
    target_time: str = ""
    at_target: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [s.backup_set_id for s in self.sets]

    @property
    def work(self) -> Path:
        return self.base / "work"


def contents(dsn: str) -> dict[str, tuple[int, str]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            table: tuple(conn.execute(CONTENT.format(table=table)).fetchone())  # type: ignore[misc]
            for table in TABLES
        }


@pytest.fixture(scope="module")
def chain(sandbox: Any, primary_store: Any) -> Iterator[Chain]:
    """Full backup, changes, incremental 1, changes, incremental 2, changes, the target, changes."""
    import psycopg

    base = state_root() / f"chain-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True)
    base.chmod(0o711)
    (base / "work").mkdir(mode=0o700)
    spool = base / "spool"
    prepare_server_dir(spool, 0o700)
    script = base / ARCHIVE_SCRIPT.name
    shutil.copy2(ARCHIVE_SCRIPT, script)
    cluster = LocalCluster(
        base / "source" / "data",
        free_port(),
        base / "source" / "log" / "server.log",
        base / "source" / "sockets",
        major=18,
    )
    password = secrets.token_urlsafe(18)
    cluster.init(
        password,
        data_checksums=True,
        conf={
            "archive_mode": "on",
            "archive_command": archive_command(script, spool),
            "fsync": "off",
            "wal_level": "replica",
            "summarize_wal": "on",
        },
    )
    cluster.start()
    key = EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)
    src = Chain(cluster, password, base, f"chain-{uuid.uuid4().hex[:8]}", key)
    conn_info = ConnectionInfo("127.0.0.1", cluster.port, "postgres", "postgres", password=password)
    dsn = cluster.dsn("postgres", password)

    def take(parent: TakenSet | None) -> None:
        src.sets.append(
            take_base_set(
                conn_info,
                primary_store,
                src.prefix,
                encryption_key=key,
                staging_dir=src.work,
                parent=parent,
            )
        )

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE patients (id int PRIMARY KEY, name text, ward int)")
            conn.execute("CREATE TABLE visits (id int PRIMARY KEY, patient int, note text)")
            conn.execute("INSERT INTO patients SELECT g, 'p' || g, g % 7 FROM generate_series(1, 20000) g")
            conn.execute("INSERT INTO visits SELECT g, g % 20000 + 1, 'v' || g FROM generate_series(1, 5000) g")
            take(None)
            conn.execute("UPDATE patients SET ward = ward + 10 WHERE id % 3 = 0")
            conn.execute("INSERT INTO visits SELECT g, g % 20000 + 1, 'v' || g FROM generate_series(5001, 6000) g")
            take(src.sets[-1])
            conn.execute("DELETE FROM patients WHERE id % 11 = 0")
            conn.execute("UPDATE visits SET note = note || ' seen' WHERE id % 5 = 0")
            take(src.sets[-1])
            conn.execute("INSERT INTO patients SELECT g, 'p' || g, 1 FROM generate_series(20001, 21000) g")
            conn.execute("UPDATE visits SET note = 'after the last incremental' WHERE id <= 100")
            src.at_target = contents(dsn)
            src.target_time = conn.execute("SELECT now()").fetchone()[0].isoformat()  # type: ignore[index]
            time.sleep(0.05)
            conn.execute("DELETE FROM visits WHERE id > 5500")  # after the target: must not be replayed
            conn.execute("UPDATE patients SET name = 'after the target'")
            name = switch_wal(conn)
        Archiver(dsn, spool, cluster.log_file).wait_spooled([name])
        ship_spool(
            primary_store,
            src.prefix,
            spool,
            encryption_key=key,
            zstd_level=3,
            staging_dir=src.work,
            remove_from_spool=True,
        )
        yield src
    finally:
        cluster.stop("immediate")
        for obj in primary_store.list(src.prefix):  # this module's sets and their broken copies
            primary_store.delete(obj.key)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Attempt:
    home: Path
    data_dir: Path
    cluster: LocalCluster


@pytest.fixture
def attempt(chain: Chain) -> Iterator[Callable[[str], Attempt]]:
    """A fresh place to recover into; every server started there is stopped and removed afterwards."""
    made: list[Attempt] = []

    def make(name: str) -> Attempt:
        home = chain.base / "recovered" / f"{name}-{uuid.uuid4().hex[:6]}"
        data_dir = home / "data"
        made.append(
            Attempt(home, data_dir, LocalCluster(data_dir, free_port(), home / "log" / "data.log", home / "sockets"))
        )
        return made[-1]

    yield make
    for one in made:
        one.cluster.stop("immediate")
        shutil.rmtree(one.home, ignore_errors=True)


def run_recover(
    chain: Chain, store: Any, key: Any, where: Attempt, *, prefix: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    return recover(
        store,
        prefix or chain.prefix,
        parse_recovery_target("time", chain.target_time),
        data_dir=where.data_dir,
        port=where.cluster.port,
        decryption_key=key,
        staging_dir=chain.work,
        **kwargs,
    )


def assert_nothing_written(chain: Chain, where: Attempt, staging_before: set[str]) -> None:
    assert not where.data_dir.exists() or list(where.data_dir.iterdir()) == []
    assert not where.home.exists() or [p.name for p in where.home.iterdir() if p.name.startswith(".")] == []
    assert {p.name for p in chain.work.iterdir()} == staging_before


def test_recovery_after_the_last_incremental_gives_exactly_the_rows_at_the_target(
    chain: Chain, primary_store: Any, restore_key: Any, attempt: Callable[[str], Attempt]
) -> None:
    where = attempt("whole")
    staging_before = {p.name for p in chain.work.iterdir()}
    result = run_recover(chain, primary_store, restore_key, where)
    assert contents(where.cluster.dsn("postgres", chain.password)) == chain.at_target
    assert result["chain"] == chain.ids and result["backup_set_id"] == chain.ids[-1]
    assert result["plan_warnings"] == []
    restored = result["restored"]
    assert restored["chain"] == chain.ids
    assert restored["combined_with"] == "pg_combinebackup --link"  # the extracts lie beside the data directory
    assert restored["verified_by"] == "pg_verifybackup" and restored["links_verified_by"] == "pg_verifybackup"
    assert restored["combined_bytes"] > 0 and restored["plain_bytes"] > restored["stored_bytes"] > 0
    assert set(restored["seconds"]) == {"download", "extract_and_verify_links", "combine", "pg_verifybackup"}
    # Replay started at the tip's WAL, not the full backup's.
    assert (
        result["wal_path"]["first_needed"] == chain.sets[-1].backup_set.manifest.body["base_backup"]["start_wal_file"]
    )
    assert not (where.data_dir / "backup_manifest").exists()
    assert [p.name for p in where.home.iterdir() if p.name.startswith(".")] == []  # link extracts removed
    assert {p.name for p in chain.work.iterdir()} == staging_before
    print("chain restore:", json.dumps(restored))


def test_check_recovery_reports_the_chain(chain: Chain, primary_store: Any, restore_key: Any) -> None:
    checked = check_recovery(
        primary_store,
        chain.prefix,
        parse_recovery_target("time", chain.target_time),
        decryption_key=restore_key,
        staging_dir=chain.work,
    )
    assert checked["chain"] == chain.ids and checked["plan_warnings"] == []
    assert checked["base_plain_bytes"] > sum(
        p.plain_size_bytes or 0 for p in chain.sets[0].backup_set.manifest.payloads
    )


def test_a_missing_link_is_refused_before_anything_is_written(
    chain: Chain, primary_store: Any, restore_key: Any, attempt: Callable[[str], Attempt]
) -> None:
    prefix = copy_prefix(primary_store, chain.prefix, "missing")
    primary_store.delete(key_for(prefix, BackupKind.BASE, chain.ids[1], MANIFEST_NAME))
    where = attempt("missing")
    staging_before = {p.name for p in chain.work.iterdir()}
    with pytest.raises(BackupChainBroken) as refused:
        run_recover(chain, primary_store, restore_key, where, prefix=prefix, backup_set_id=chain.ids[2])
    assert refused.value.missing_backup_set_id == chain.ids[1] and chain.ids[1] in refused.value.message
    assert_nothing_written(chain, where, staging_before)
    # Unnamed, the full backup still serves the target: the plan says which chain it passed over.
    checked = check_recovery(
        primary_store,
        prefix,
        parse_recovery_target("time", chain.target_time),
        decryption_key=restore_key,
        staging_dir=chain.work,
    )
    assert checked["chain"] == chain.ids[:1]
    assert len(checked["plan_warnings"]) == 1 and chain.ids[2] in checked["plan_warnings"][0]


def test_a_link_of_another_cluster_is_refused_before_anything_is_written(
    chain: Chain, primary_store: Any, restore_key: Any, attempt: Callable[[str], Attempt]
) -> None:
    prefix = copy_prefix(primary_store, chain.prefix, "foreign")
    manifest_key = key_for(prefix, BackupKind.BASE, chain.ids[1], MANIFEST_NAME)
    body = json.loads(primary_store.get_bytes(manifest_key))
    body["base_backup"]["system_identifier"] = "7000000000000000001"
    primary_store.delete(manifest_key)
    primary_store.put_bytes(manifest_key, json.dumps(body).encode())
    where = attempt("foreign")
    staging_before = {p.name for p in chain.work.iterdir()}
    with pytest.raises(BackupChainBroken, match="different clusters") as refused:
        check_recovery(  # the DR DAGs' validation: the store's fault, so it pages (not RequestRefused)
            primary_store,
            prefix,
            parse_recovery_target("time", chain.target_time),
            decryption_key=restore_key,
            staging_dir=chain.work,
            backup_set_id=chain.ids[2],
        )
    assert "7000000000000000001" in refused.value.message
    with pytest.raises(BackupChainBroken, match="different clusters"):
        run_recover(chain, primary_store, restore_key, where, prefix=prefix, backup_set_id=chain.ids[2])
    assert_nothing_written(chain, where, staging_before)


def test_a_corrupted_link_is_named_before_anything_is_written(
    chain: Chain, primary_store: Any, restore_key: Any, attempt: Callable[[str], Attempt]
) -> None:
    prefix = copy_prefix(primary_store, chain.prefix, "corrupt")
    payload_key = key_for(prefix, BackupKind.BASE, chain.ids[1], "base.tar.zst.gpg")
    data = bytearray(primary_store.get_bytes(payload_key))
    data[len(data) // 2] ^= 0xFF
    primary_store.put_bytes(payload_key, bytes(data), overwrite=True)
    where = attempt("corrupt")
    staging_before = {p.name for p in chain.work.iterdir()}
    with pytest.raises(ChecksumMismatch) as refused:
        run_recover(chain, primary_store, restore_key, where, prefix=prefix)
    message = refused.value.message
    assert f"base.tar.zst.gpg of base backup set {chain.ids[1]}" in message and "nothing was restored" in message
    assert_nothing_written(chain, where, staging_before)


def test_a_tampered_link_fails_pg_verifybackup_before_the_data_directory_is_written(
    chain: Chain, primary_store: Any, restore_key: Any, attempt: Callable[[str], Attempt]
) -> None:
    prefix = copy_prefix(primary_store, chain.prefix, "tampered")
    changed: list[str] = []

    def flip_a_byte_of_the_largest_file(plain: Path) -> None:
        edited = plain.with_suffix(".edited")
        with tarfile.open(plain) as original:
            victim = max((m for m in original if m.isfile()), key=lambda m: m.size)
            with tarfile.open(edited, "w", format=tarfile.GNU_FORMAT) as out:
                for member in original:
                    handle = original.extractfile(member) if member.isfile() else None
                    if member.name == victim.name and handle is not None:
                        data = bytearray(handle.read())
                        data[len(data) // 2] ^= 0xFF
                        out.addfile(member, io.BytesIO(bytes(data)))
                        changed.append(member.name)
                    else:
                        out.addfile(member, handle)
        edited.replace(plain)

    republish_base(
        primary_store,
        prefix,
        chain.ids[1],
        "pg_basebackup-base-tar",
        flip_a_byte_of_the_largest_file,
        chain.encryption_key,
        restore_key,
        chain.work,
    )
    where = attempt("tampered")
    staging_before = {p.name for p in chain.work.iterdir()}
    with pytest.raises(BackupVerificationFailed) as refused:
        run_recover(chain, primary_store, restore_key, where, prefix=prefix)
    assert f"base backup set {chain.ids[1]} of the chain of base backup set {chain.ids[2]}" in refused.value.message
    assert changed[0] in refused.value.message
    assert_nothing_written(chain, where, staging_before)
