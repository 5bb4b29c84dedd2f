"""argv builders and output parsers of the PostgreSQL client tools, without a server."""

from __future__ import annotations

import secrets

from hms_dr.pginstalls import PgInstall, parse_tool_version
from hms_dr.pgtools import ConnectionInfo, parse_restore_list, pg_dump_argv

PASSWORD = secrets.token_hex(16)  # generated per run, never a literal


def test_password_goes_to_the_environment_never_argv_or_repr(pg15: PgInstall) -> None:
    conn = ConnectionInfo("127.0.0.1", 5433, "hms_backup", "hospital_management", password=PASSWORD)
    argv = pg_dump_argv(pg15, snapshot="00000003-00000002-1", archive_format="c", compress_level=0)
    assert not any(PASSWORD in a for a in argv)
    assert PASSWORD not in repr(conn)
    assert conn.libpq_env()["PGPASSWORD"] == PASSWORD


def test_pg_dump_argv_shares_the_snapshot_and_selects_tables(pg15: PgInstall) -> None:
    argv = pg_dump_argv(
        pg15, snapshot="S-1", archive_format="c", compress_level=0, data_only=True, tables=["public.billing"]
    )
    assert "--snapshot=S-1" in argv and "--data-only" in argv and "--table=public.billing" in argv
    assert "--format=c" in argv and "--compress=0" in argv
    assert "--blobs" not in argv


def test_whole_database_dump_includes_large_objects(pg15: PgInstall) -> None:
    assert "--blobs" in pg_dump_argv(pg15, snapshot=None, archive_format="c", compress_level=6)


def test_reads_versions_of_debian_builds() -> None:
    assert parse_tool_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n") == (15, "15.18")
    assert parse_tool_version("pg_restore (PostgreSQL) 16beta2") == (16, "16")


def test_parses_restore_list_entries() -> None:
    listing = """;
; Archive created at 2026-11-24 02:00:01 UTC
3401; 0 16390 TABLE DATA public patients hms_admin
3402; 0 16400 TABLE DATA public billing hms_admin
215; 1259 16385 TABLE public patients hms_admin
3250; 2606 16550 FK CONSTRAINT public billing billing_patient_id_fkey hms_admin
"""
    entries = parse_restore_list(listing)
    assert ("TABLE DATA", "public", "patients") in entries
    assert ("TABLE DATA", "public", "billing") in entries
    assert ("TABLE", "public", "patients") in entries
    # A constraint's tag is "table constraint": both words are its name here.
    assert ("FK CONSTRAINT", "public", "billing billing_patient_id_fkey") in entries
