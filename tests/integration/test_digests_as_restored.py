"""The restore test's content digests, taken while pg_restore still runs: each table's as soon as
pg_restore says its rows are in, the rest (and the large objects) once it has ended. On real
pg_restore -j2 restores of a real dump: the digests are exactly those of the dump, and those the
checks take of the whole restored database after the restore; a failed restore leaves no pg_dump
behind, and the scratch database can be dropped."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from restoring import programs_for

from hms_dr.errors import ToolFailed
from hms_dr.logical.as_restored import finished_table_data, table_data_items
from hms_dr.logical.content import (
    METHOD,
    ContentDigests,
    RestoredDigest,
    digest_argv,
    digest_env,
    dump_session_options,
    restored_dump_env,
)
from hms_dr.pgtools import ConnectionInfo
from hms_dr.restore_test.logical import restore_taking_digests

pytestmark = [pytest.mark.integration, pytest.mark.pg_majors(15, 18)]

SOURCE = "digests_as_restored_source"
BACKENDS_GONE_WITHIN_S = 5
# Tables big enough that pg_restore -j2 is still building indexes when the first ones are in, a
# partitioned table (its parent has no rows of its own), a quoted name, an empty table, two
# large objects.
SCHEMA = """
CREATE TABLE patients (id int PRIMARY KEY, name text, born date);
INSERT INTO patients SELECT g, 'patient ' || g, date '1950-01-01' + g % 20000 FROM generate_series(1, 60000) g;
CREATE INDEX ON patients (name);
CREATE TABLE visits (id int PRIMARY KEY, patient_id int REFERENCES patients, at timestamptz, note text);
INSERT INTO visits SELECT g, 1 + g % 60000, timestamptz '2026-01-01' + g * interval '1 minute', repeat('x', g % 50)
  FROM generate_series(1, 120000) g;
CREATE INDEX ON visits (at);
CREATE TABLE "Lab Results" (id int PRIMARY KEY, value numeric);
INSERT INTO "Lab Results" SELECT g, g / 7.0 FROM generate_series(1, 30000) g;
CREATE TABLE empty_one (id int);
CREATE TABLE readings (at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE readings_2026 PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO readings SELECT date '2026-01-01' + g % 365, g FROM generate_series(1, 20000) g;
SELECT lo_from_bytea(0, 'first large object'::bytea);
SELECT lo_from_bytea(0, '\\x00ff00ff'::bytea);
"""
TABLES = [
    ("public", "patients"),
    ("public", "visits"),
    ("public", "Lab Results"),
    ("public", "empty_one"),
    ("public", "readings"),
    ("public", "readings_2026"),
]


def connection(dsn: str, dbname: str | None = None) -> ConnectionInfo:
    params = conninfo_to_dict(dsn)
    return ConnectionInfo(
        str(params["host"]),
        int(str(params["port"])),
        str(params["user"]),
        dbname or str(params["dbname"]),
        str(params["password"]),
    )


@pytest.fixture(scope="module")
def source(scratch_cluster: str) -> Iterator[str]:
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {SOURCE}")
    dsn = scratch_cluster.replace("dbname=postgres", f"dbname={SOURCE}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield dsn
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {SOURCE} WITH (FORCE)")


@pytest.fixture(scope="module")
def archive(source: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A -Fc -Z0 dump written to a pipe, as the daily backup writes it (no data offsets)."""
    path = tmp_path_factory.mktemp("dump") / "whole.pgdump"
    env = {**restored_dump_env(conninfo_to_dict(source), None), "PGOPTIONS": dump_session_options()}  # type: ignore[arg-type]
    done = subprocess.run(
        [programs_for(source).program("pg_dump"), "--format=c", "--compress=0", "--blobs"],
        env=env,
        capture_output=True,  # a pipe: a seekable file gets what the digest's reader refuses (pg_dump 18)
        check=True,
        timeout=120,
    )
    path.write_bytes(done.stdout)
    return path


@pytest.fixture(scope="module")
def baselines(archive: Path) -> dict[str, Any]:
    """What a daily set's baselines hold of the dump's content (the method's digests of it)."""
    done = subprocess.run(
        digest_argv(), stdin=archive.open("rb"), env=digest_env(), capture_output=True, check=True, timeout=120
    )
    dumped = ContentDigests.from_program_output(done.stdout)
    return {
        "tables": {f"{schema}.{name}": {"content": dict(dumped.table(schema, name))} for schema, name in TABLES},
        "large_objects": dict(dumped.large_objects or {}),
        "content_digest": {"method": METHOD, "encoding": dumped.encoding},
    }


@pytest.fixture
def scratch(scratch_cluster: str) -> Iterator[ConnectionInfo]:
    name = "digests_as_restored_scratch"
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    yield connection(scratch_cluster, name)
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        # Without FORCE: a pg_dump still connected would make this fail.
        admin.execute(f"DROP DATABASE {name}")


def test_the_table_data_items_of_the_archive_are_its_tables(archive: Path, source: str) -> None:
    items = table_data_items(archive)
    listing = subprocess.run(
        [programs_for(source).program("pg_restore"), "--list", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = {int(line.split(";")[0]) for line in listing.splitlines() if " TABLE DATA " in line}
    assert set(items) == listed
    assert sorted(items.values()) == sorted(table for table in TABLES if table != ("public", "readings"))


def test_a_line_of_pg_restore_names_the_item_it_finished() -> None:
    assert finished_table_data("pg_restore: finished item 3412 TABLE DATA visits") == 3412
    assert finished_table_data('pg_restore: finished item 3412 TABLE DATA "Lab Results"') == 3412
    assert finished_table_data("pg_restore: finished item 3420 INDEX visits_at_idx") is None
    assert finished_table_data("pg_restore: launching item 3412 TABLE DATA visits") is None
    assert finished_table_data('pg_restore: processing data for table "public.visits"') is None


def test_digests_taken_while_restoring_are_the_dumps_and_the_whole_restored_databases(
    archive: Path, baselines: dict[str, Any], scratch: ConnectionInfo
) -> None:
    restored, taken, _after = restore_taking_digests(scratch, archive, baselines, jobs=2, expected_bytes=None)

    assert restored["jobs"] == 2 and taken is not None and taken.error is None and taken.digests is not None
    # pg_restore -j2 announced the tables as their rows came in, and their digests started then.
    assert taken.while_restoring >= 1
    for schema, name in TABLES:
        assert dict(taken.digests.table(schema, name)) == baselines["tables"][f"{schema}.{name}"]["content"], name
    assert dict(taken.digests.large_objects or {}) == baselines["large_objects"]
    # The same as one pg_dump of the whole restored database, the checks' way when nothing was taken.
    env = restored_dump_env(
        {
            "host": scratch.host,
            "port": str(scratch.port),
            "user": scratch.user,
            "dbname": scratch.dbname,
            "password": scratch.password or "",
        },
        taken.digests.encoding,
    )
    pg = programs_for(scratch.libpq_dsn())
    whole = RestoredDigest(env, pg, tables=None, large_objects=True).result()
    assert {table: dict(whole.table(*table)) for table in TABLES} == {
        table: dict(taken.digests.table(*table)) for table in TABLES
    }
    assert whole.large_objects == taken.digests.large_objects


def test_a_serial_restore_takes_every_digest_once_it_has_ended(
    archive: Path, baselines: dict[str, Any], scratch: ConnectionInfo
) -> None:
    _, taken, _ = restore_taking_digests(scratch, archive, baselines, jobs=1, expected_bytes=None)

    assert taken is not None and taken.digests is not None and taken.while_restoring == 0
    for schema, name in TABLES:
        assert dict(taken.digests.table(schema, name)) == baselines["tables"][f"{schema}.{name}"]["content"], name


def restore_programs_running() -> list[str]:
    """This test process's children that a restore with digests starts (pg_restore, pg_dump and the
    digest's python), as command lines; other children (the worker's sandbox servers) are left out."""
    running = []
    for child in psutil.Process().children(recursive=True):
        try:
            name, command = child.name(), " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue  # ended while listed
        if name in ("pg_restore", "pg_dump") or "archive_digest" in command:
            running.append(command)
    return running


def test_a_failed_restore_leaves_no_digest_running(
    archive: Path, baselines: dict[str, Any], scratch: ConnectionInfo, tmp_path: Path, scratch_cluster: str
) -> None:
    # The archive cut inside the rows of its second half: pg_restore fails after the first tables are in.
    data = archive.read_bytes()
    broken = tmp_path / "cut.pgdump"
    broken.write_bytes(data[: len(data) * 3 // 4])

    with pytest.raises(ToolFailed, match="pg_restore"):
        restore_taking_digests(scratch, broken, baselines, jobs=2, expected_bytes=None)

    # When it raises, every program it started has ended: no pg_dump still reading the database.
    assert restore_programs_running() == []
    # Their server backends end as they notice their client gone (a moment, not a dump's length);
    # the scratch fixture then drops the database without FORCE.
    deadline = time.monotonic() + BACKENDS_GONE_WITHIN_S
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        while left := admin.execute(
            "SELECT application_name, state FROM pg_stat_activity WHERE datname = %s", (scratch.dbname,)
        ).fetchall():
            assert time.monotonic() < deadline, f"still connected {BACKENDS_GONE_WITHIN_S} s after the failure: {left}"
            time.sleep(0.05)
