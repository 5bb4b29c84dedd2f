"""The archive reader behind the content digests, on real pg_dump archives of values that test
COPY text at its edges: an empty string and NULL, tabs, newlines and backslashes inside values, a
value that reads like COPY's end-of-data mark, Unicode, a table with no column at all, duplicate
rows. A digest depends on the rows, never on their order, the archive's compression or how the
bytes arrive; and a damaged archive is an error, never a digest.

In this process bytes hash with a random seed, so digests computed here compare only with each
other; the program, run as the engine runs it, computes the method's (PYTHONHASHSEED=0)."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from restoring import programs_for

from hms_dr.logical.archive_digest import ArchiveError, digest_archive
from hms_dr.logical.content import ContentDigests, digest_argv, digest_env

pytestmark = [pytest.mark.integration, pytest.mark.pg_majors(15, 18)]

EDGE_ROWS = """
CREATE TABLE edges (id int, note text);
INSERT INTO edges VALUES (1, ''), (2, NULL), (3, E'tab\\there'), (4, E'two\\nlines'), (5, E'back\\\\slash'),
                         (6, '\\.'), (7, 'ünïcødé ✓'), (8, E'\\r\\n'), (9, 'same'), (10, 'same');
CREATE TABLE no_columns ();
INSERT INTO no_columns DEFAULT VALUES;
INSERT INTO no_columns DEFAULT VALUES;
CREATE TABLE duplicates (v int);
INSERT INTO duplicates VALUES (1), (1), (2);
SELECT lo_from_bytea(0, '\\x0001020304'::bytea);
"""
# duplicates holds the rows 1, 1 and 2: their digest under the method, computed once and fixed for good.
KNOWN_DUPLICATES_DIGEST = {"rows": 3, "digest": "55a01d49445c56f796c9a5640954f4fc"}


@pytest.fixture(scope="module")
def database(scratch_cluster: str) -> Iterator[str]:
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute("CREATE DATABASE digest_edges")
    dsn = scratch_cluster.replace("dbname=postgres", "dbname=digest_edges")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EDGE_ROWS)
    yield dsn
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute("DROP DATABASE digest_edges WITH (FORCE)")


def dump(dsn: str, *options: str) -> bytes:
    params = conninfo_to_dict(dsn)
    env = {
        "PGHOST": str(params["host"]),
        "PGPORT": str(params["port"]),
        "PGUSER": str(params["user"]),
        "PGPASSWORD": str(params["password"]),
        "PGDATABASE": str(params["dbname"]),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [programs_for(dsn).program("pg_dump"), "--format=c", "--blobs", *options],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def run_program(archive: bytes) -> ContentDigests:
    """archive_digest.py as the engine runs it."""
    done = subprocess.run(digest_argv(), input=archive, env=digest_env(), capture_output=True, timeout=120, check=True)
    return ContentDigests.from_program_output(done.stdout)


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, as a pipe may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.position = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.data[self.position : self.position + self.step]
        self.position += len(chunk)
        return chunk


def test_every_row_counts_once_whatever_its_text(database: str) -> None:
    digests = digest_archive(io.BytesIO(dump(database, "--compress=0")))

    assert {name: d.rows for (_, name), d in digests.tables.items()} == {"edges": 10, "no_columns": 2, "duplicates": 3}
    assert digests.has_large_objects and digests.large_objects.count == 1
    assert digests.encoding == "UTF8"


def test_compression_and_read_sizes_do_not_change_the_digest(database: str) -> None:
    plain = dump(database, "--compress=0")
    expected = digest_archive(io.BytesIO(plain)).to_json()

    assert digest_archive(io.BytesIO(dump(database, "--compress=6"))).to_json() == expected
    assert digest_archive(Trickle(plain, 7)).to_json() == expected  # type: ignore[arg-type]
    compressed = run_program(dump(database, "--compress=6"))
    assert run_program(plain) == compressed and compressed.tables[("public", "edges")]["rows"] == 10


def test_row_order_does_not_matter_and_one_changed_value_does(database: str) -> None:
    before = digest_archive(io.BytesIO(dump(database, "--compress=0"))).tables[("public", "edges")].record()
    with psycopg.connect(database, autocommit=True) as conn:
        # Rewrite the table in another physical order: the same rows, scanned differently.
        conn.execute("CREATE TABLE edges_reordered AS SELECT * FROM edges ORDER BY id DESC")
        conn.execute("DROP TABLE edges")
        conn.execute("ALTER TABLE edges_reordered RENAME TO edges")
    reordered = digest_archive(io.BytesIO(dump(database, "--compress=0"))).tables[("public", "edges")].record()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE edges SET note = 'Same' WHERE id = 10")
    changed = digest_archive(io.BytesIO(dump(database, "--compress=0"))).tables[("public", "edges")].record()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE edges SET note = 'same' WHERE id = 10")

    assert reordered == before
    assert changed["rows"] == before["rows"] and changed["digest"] != before["digest"]


def test_a_truncated_or_foreign_archive_is_an_error(database: str, tmp_path: Path) -> None:
    plain = dump(database, "--compress=0")

    with pytest.raises(ArchiveError, match="ends early"):
        digest_archive(io.BytesIO(plain[: len(plain) - 40]))
    with pytest.raises(ArchiveError, match="PGDMP"):
        digest_archive(io.BytesIO(b"-- PostgreSQL database dump\n" + plain))
    program = subprocess.run(digest_argv(), input=plain[:1000], env=digest_env(), capture_output=True, timeout=60)
    assert program.returncode == 1 and b"ends early" in program.stderr and program.stdout == b""


def test_the_program_refuses_an_interpreter_that_hashes_otherwise(database: str) -> None:
    program = subprocess.run(
        digest_argv(),
        input=dump(database, "--compress=0"),
        env={**digest_env(), "PYTHONHASHSEED": "1"},
        capture_output=True,
        timeout=60,
    )
    assert program.returncode == 1 and b"run it with PYTHONHASHSEED=0" in program.stderr and program.stdout == b""


def test_the_programs_digests_are_the_same_in_every_run(database: str) -> None:
    # The method's digest of a known row: SipHash-1-3 with the all-zero key, fixed for good.
    plain = dump(database, "--compress=0")
    assert run_program(plain) == run_program(plain)
    assert run_program(plain).tables[("public", "duplicates")] == KNOWN_DUPLICATES_DIGEST
