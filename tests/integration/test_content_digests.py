"""Every value proven: a restore test fails, naming the table, on one changed value in any table
(with a primary key or without), a deleted row, a changed large object or an edited baseline,
even when the stored payload is a perfectly consistent archive whose sha256 the manifest vouches
for. Only the content digests, recorded from the dump stream at backup time, can catch that.

A database of its own on the sandbox's server, with defaults a restore target does not share (a
time zone far from UTC, escaped bytea output): the digests must not mistake them for a change.
The sets are taken and restore-tested with the engine's own functions, as the DAG's tasks call
them; the doctored sets are the real set with its payload replaced by a re-dump of a restored and
damaged copy, compressed and encrypted like the original, the manifest's proofs rewritten to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from restoring import programs_for

from hms_dr import restore
from hms_dr.catalog import find_set, key_for, list_catalog
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home
from hms_dr.errors import DecryptionFailed
from hms_dr.logical import publish_logical_sets, take_logical_backup
from hms_dr.manifest import BackupKind, dump_manifest, new_backup_set_id
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import EncryptionMode, load_policy
from hms_dr.quality import check_restored_database
from hms_dr.restore_test.logical import restore_taking_digests
from hms_dr.scratch.database import (
    ScratchDatabaseKind,
    create_scratch_database,
    drop_scratch_database,
    scratch_database_name,
)
from hms_dr.streams import Pipeline, Stage

pytestmark = pytest.mark.integration

DATABASE = "content_digest_check"
CLUSTER = "content-digest-test"

SCHEMA = """
CREATE TABLE priced (id int PRIMARY KEY, item text NOT NULL, price numeric(10,2) NOT NULL,
                     changed_at timestamptz NOT NULL, scan bytea);
INSERT INTO priced
SELECT g, 'item ' || g, (g * 1.25)::numeric(10,2), timestamptz '2026-01-01 08:00+00' + g * interval '37 minutes',
       CASE WHEN g % 3 = 0 THEN decode(md5(g::text), 'hex') END
FROM generate_series(1, 400) AS g;
-- No primary key, and duplicate rows: only a digest of every row tells one changed copy apart.
CREATE TABLE readings (sensor text, reading double precision, taken_at timestamptz);
INSERT INTO readings
SELECT 'ward-' || (g % 7), (g % 11) / 3.0, timestamptz '2026-02-01 00:00+00' + (g % 50) * interval '1 hour'
FROM generate_series(1, 600) AS g;
CREATE TABLE empty_one (id int PRIMARY KEY);
-- Names as odd as SQL allows, in a second schema, and a partitioned table whose rows live in its partitions.
CREATE SCHEMA "Audit Trail";
CREATE TABLE "Audit Trail"."Order Details" (line int, note text);
INSERT INTO "Audit Trail"."Order Details" SELECT g, 'line ' || g FROM generate_series(1, 50) AS g;
CREATE TABLE measurements (taken date NOT NULL, value int) PARTITION BY RANGE (taken);
CREATE TABLE "measurements 2026" PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurements SELECT date '2026-01-01' + g, g FROM generate_series(0, 99) AS g;
SELECT lo_from_bytea(0, convert_to(repeat('consent form, page scan ', 500), 'UTF8'));
SELECT lo_from_bytea(0, '\\x00ff00ff'::bytea);
"""


@dataclasses.dataclass
class DigestWorld:
    sandbox: Any
    store: Any
    policy: Any
    backup_key: EncryptionKey
    restore_key: Any
    admin: ConnectionInfo

    def restore_test(self, backup_set_id: str, workdir: Path, *, digests_as_restored: bool = True) -> dict[str, Any]:
        """restore_into_scratch + check_against_baselines, as the restore-test DAG's tasks run them:
        the content digests taken as pg_restore restores each table, compared by the checks.
        ``digests_as_restored`` False: restored alone, every digest taken by the checks (the DR
        restore's and the physical drill's way)."""
        backup_set = find_set(self.store, CLUSTER, BackupKind.LOGICAL, backup_set_id)
        scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "digests")
        fetched = restore.fetch_for_restore(self.store, backup_set, self.restore_key, workdir / "fetch")
        taken = None
        try:
            create_scratch_database(self.admin, scratch)
            if digests_as_restored:
                _, taken, _ = restore_taking_digests(
                    self.admin.with_database(scratch),
                    fetched.path,
                    backup_set.manifest.baselines,
                    jobs=2,
                    expected_bytes=None,
                )
                assert taken is not None and taken.error is None, taken
            else:
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
                content_taken=taken,
            )
        finally:
            drop_scratch_database(self.admin, scratch)


@pytest.fixture(scope="module")
def world(sandbox: Any, primary_store: Any, restore_key: Any) -> Iterator[DigestWorld]:
    with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        # Defaults the restore target does not have: the digests must see through them.
        admin.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Pacific/Chatham'").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("ALTER DATABASE {} SET bytea_output TO 'escape'").format(sql.Identifier(DATABASE)))
    with psycopg.connect(sandbox.superuser_dsn(DATABASE), autocommit=True) as conn:
        conn.execute(SCHEMA)
        # Large objects are the superuser's: the backup role reads them by grant (pg_read_all_data does not cover them).
        for (oid,) in conn.execute("SELECT oid FROM pg_largeobject_metadata").fetchall():
            conn.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO hms_backup").format(sql.Literal(oid)))
    base = load_policy(Path(sandbox.paths.policy_file))
    policy = dataclasses.replace(
        base,
        cluster=dataclasses.replace(base.cluster, name=CLUSTER, database=DATABASE),
        logical_backup=dataclasses.replace(
            base.logical_backup,
            baseline_views=(),
            data_only_tables=("readings", '"Audit Trail"."Order Details"', "measurements"),
        ),
    )
    admin_info = ConnectionInfo(
        "127.0.0.1", sandbox.pg_port, "postgres", "postgres", password=sandbox.secrets.role_passwords["postgres"]
    )
    backup_key = EncryptionKey(
        EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key
    )
    yield DigestWorld(sandbox, primary_store, policy, backup_key, restore_key, admin_info)
    with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def backup_connection(world: DigestWorld) -> ConnectionInfo:
    return ConnectionInfo(
        "127.0.0.1",
        world.sandbox.pg_port,
        "hms_backup",
        DATABASE,
        password=world.sandbox.secrets.role_passwords["hms_backup"],
    )


@pytest.fixture(scope="module")
def backup_set_id(world: DigestWorld) -> str:
    result = take_logical_backup(
        backup_connection(world),
        world.store,
        world.backup_key,
        cluster=world.policy.cluster.name,
        logical_backup=world.policy.logical_backup,
        compression=world.policy.compression,
        staging=world.policy.staging,
    )
    publish_logical_sets(world.store, result, {"dag_id": "test", "run_id": "content-digests"})
    return result.backup_set_id


def content_rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in summary["checks"] if row["check"] in ("table_content", "large_objects")}


def test_baselines_hold_a_digest_of_every_table_and_of_the_large_objects(
    world: DigestWorld, backup_set_id: str
) -> None:
    baselines = find_set(world.store, CLUSTER, BackupKind.LOGICAL, backup_set_id).manifest.baselines
    tables = baselines["tables"]
    assert {name: t["content"]["rows"] for name, t in tables.items()} == {
        "public.priced": 400,
        "public.readings": 600,
        "public.empty_one": 0,
        "Audit Trail.Order Details": 50,
        "public.measurements": 0,
        "public.measurements 2026": 100,
    }  # a partitioned parent's rows are its partitions'
    assert all(t["rows"] == t["content"]["rows"] for t in tables.values())  # counted by the digest, not a 2nd read
    assert (
        tables["public.empty_one"]["content"]["digest"]
        == "0" * 32
        == tables["public.measurements"]["content"]["digest"]
    )
    assert len({t["content"]["digest"] for t in tables.values()}) == 5
    assert baselines["large_objects"]["rows"] == 2
    assert baselines["content_digest"]["session_settings"]["TimeZone"] == "UTC"


@pytest.mark.parametrize("as_restored", [True, False], ids=["digests-as-restored", "digests-by-the-checks"])
def test_an_untouched_set_passes_every_content_check(
    world: DigestWorld, backup_set_id: str, tmp_path: Path, as_restored: bool
) -> None:
    summary = world.restore_test(backup_set_id, tmp_path, digests_as_restored=as_restored)
    assert summary["passed"], summary["failed"]
    rows = content_rows(summary)
    assert set(rows) == {
        "public.priced",
        "public.readings",
        "public.empty_one",
        "Audit Trail.Order Details",
        "public.measurements",
        "public.measurements 2026",
        "large objects",
    }
    assert all(row["passed"] and row["observed"] == row["expected"] for row in rows.values())
    assert "every value of its 400 rows as in the backup" in rows["public.priced"]["message"]
    report = (tmp_path / "report" / "report.html").read_text()
    assert "table_content" in report and "large objects" in report


def doctor_set(world: DigestWorld, backup_set_id: str, damage: Callable[[str], None], workdir: Path) -> str:
    """A copy of the set whose payload is a re-dump of the restored set after ``damage``
    (called with a DSN), stored like the original and vouched for by a rewritten manifest."""
    original = find_set(world.store, CLUSTER, BackupKind.LOGICAL, backup_set_id)
    fetched = restore.fetch_for_restore(world.store, original, world.restore_key, workdir / "fetch")
    copy_db = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "doctor")
    create_scratch_database(world.admin, copy_db)
    try:
        restore.run_pg_restore(world.admin.with_database(copy_db), fetched.path, jobs=1)
        damage(world.sandbox.superuser_dsn(copy_db))
        redump = workdir / "doctored.pgdump"
        env = {"PGPASSWORD": world.sandbox.secrets.role_passwords["postgres"]}
        subprocess.run(
            [
                programs_for(world.sandbox.superuser_dsn()).program("pg_dump"),
                "--format=c",
                "--compress=0",
                "--blobs",
                "-h",
                "127.0.0.1",
                "-p",
                str(world.sandbox.pg_port),
                "-U",
                "postgres",
                "-f",
                str(redump),
                copy_db,
            ],
            check=True,
            env={**env, "PATH": "/usr/bin:/bin"},
            timeout=300,
        )
    finally:
        drop_scratch_database(world.admin, copy_db)
        shutil.rmtree(workdir / "fetch", ignore_errors=True)

    doctored_id = another_set_id(world.store, original)
    payload = original.manifest.payloads[0]
    key = key_for(CLUSTER, BackupKind.LOGICAL, doctored_id, payload.name)
    with gpg_home(world.policy.staging.dir) as home, redump.open("rb") as source:
        check_encryption_key(home, world.backup_key)  # imports the backup's public key, as the backup does
        stages = [Stage("zstd", ["zstd", "-q", "-c", "-1"]), encrypt_stage(home, world.backup_key)]
        with Pipeline(stages, source=source) as pipeline:
            stored = world.store.put(key, pipeline.output)
    document = json.loads(json.dumps(dict(original.manifest.body)))
    document["backup_set_id"] = doctored_id
    document["payloads"] = [
        {
            **document["payloads"][0],
            "size_bytes": stored.size_bytes,
            "sha256": stored.sha256,
            "plain_size_bytes": redump.stat().st_size,
            "plain_sha256": hashlib.sha256(redump.read_bytes()).hexdigest(),
        }
    ]
    world.store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, doctored_id, "manifest.json"), dump_manifest(document))
    return doctored_id


def another_set_id(store: Any, original: Any) -> str:
    """A free set id after the original's (ids are whole seconds)."""
    existing = {s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.LOGICAL).sets}
    moment = original.finished_at
    while new_backup_set_id(moment) in existing:
        moment += timedelta(seconds=1)
    return new_backup_set_id(moment)


def run_sql(*statements: str) -> Callable[[str], None]:
    def damage(dsn: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # the test's own fixed SQL

    return damage


@pytest.mark.parametrize(
    ("damage", "table", "words"),
    [
        pytest.param(
            run_sql("UPDATE priced SET price = price + 0.01 WHERE id = 123"),
            "public.priced",
            ["content differs", "400 rows as in the baseline"],
            id="one-price-in-a-table-with-a-key",
        ),
        pytest.param(
            run_sql("UPDATE readings SET reading = 99 WHERE ctid = (SELECT min(ctid) FROM readings)"),
            "public.readings",
            ["content differs", "600 rows as in the baseline"],
            id="one-value-in-a-table-without-a-key",
        ),
        pytest.param(
            run_sql("DELETE FROM priced WHERE id = 7"), "public.priced", ["399 rows, baseline 400"], id="a-deleted-row"
        ),
        pytest.param(
            run_sql("""UPDATE "Audit Trail"."Order Details" SET note = 'line 7 ' WHERE line = 7"""),
            "Audit Trail.Order Details",
            ["content differs", "50 rows as in the baseline"],
            id="a-spaced-name-in-a-quoted-schema",
        ),
        pytest.param(
            run_sql("UPDATE measurements SET value = -1 WHERE value = 42"),
            "public.measurements 2026",
            ["content differs", "100 rows as in the baseline"],
            id="a-value-in-a-partition",
        ),
        pytest.param(
            run_sql("SELECT lo_put((SELECT min(oid) FROM pg_largeobject_metadata), 3, '\\x41'::bytea)"),
            "large objects",
            ["large objects differ", "2 as in the baseline"],
            id="a-changed-large-object",
        ),
    ],
)
def test_a_doctored_set_with_consistent_proofs_fails_naming_what_changed(
    world: DigestWorld, backup_set_id: str, tmp_path: Path, damage: Callable[[str], None], table: str, words: list[str]
) -> None:
    doctored = doctor_set(world, backup_set_id, damage, tmp_path)
    summary = world.restore_test(doctored, tmp_path)  # the payload's sha256 is proven on the way: it is consistent

    assert not summary["passed"]
    failed = [row for row in summary["checks"] if not row["passed"]]
    assert {row["target"] for row in failed} == {table}, summary["failed"]
    content = [row for row in failed if row["check"] in ("table_content", "large_objects")]
    assert len(content) == 1 and all(word in content[0]["message"] for word in words), content
    if "rows as in the baseline" in words[-1] or table == "large objects":
        assert failed == content  # the same row count: no other check can tell


def test_an_edited_baseline_digest_fails_naming_the_table(
    world: DigestWorld, backup_set_id: str, tmp_path: Path
) -> None:
    original = find_set(world.store, CLUSTER, BackupKind.LOGICAL, backup_set_id)
    document = json.loads(json.dumps(dict(original.manifest.body)))
    doctored_id = another_set_id(world.store, original)
    digest = document["baselines"]["tables"]["public.readings"]["content"]["digest"]
    document["baselines"]["tables"]["public.readings"]["content"]["digest"] = (
        "f" if digest[0] != "f" else "e"
    ) + digest[1:]
    document["backup_set_id"] = doctored_id
    payload = original.manifest.payloads[0]
    world.store.put_bytes(
        key_for(CLUSTER, BackupKind.LOGICAL, doctored_id, payload.name),
        world.store.get_bytes(key_for(CLUSTER, BackupKind.LOGICAL, backup_set_id, payload.name)),
    )
    world.store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, doctored_id, "manifest.json"), dump_manifest(document))

    summary = world.restore_test(doctored_id, tmp_path)

    assert [row["target"] for row in summary["checks"] if not row["passed"]] == ["public.readings"]
    assert "content differs from the backup" in summary["failed"][0]


class OpenedKeys:
    """The world's store, noting every object a restore opens for reading (a real store, watched)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.opened: list[str] = []

    def open(self, key: str) -> Any:
        self.opened.append(key)
        return self._store.open(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_wrong_restore_passphrase_is_said_before_a_byte_is_downloaded(
    world: DigestWorld, backup_set_id: str, tmp_path: Path
) -> None:
    backup_set = find_set(world.store, CLUSTER, BackupKind.LOGICAL, backup_set_id)
    wrong = dataclasses.replace(world.restore_key, passphrase=secrets.token_hex(12))
    watched = OpenedKeys(world.store)

    with pytest.raises(DecryptionFailed) as failure:
        restore.fetch_for_restore(watched, backup_set, wrong, tmp_path / "fetch")  # type: ignore[arg-type]

    assert "passphrase" in failure.value.message.lower(), failure.value.message
    assert watched.opened == []
    assert list((tmp_path / "fetch").iterdir()) == []
