"""The copy into production: pg_dump of exactly one schema, psql as one transaction that stops at
the first error, and no secret in either argv."""

from __future__ import annotations

from hms_dr.dr.copy import dump_argv, load_argv
from hms_dr.pginstalls import PgInstall


def test_the_dump_is_one_exact_schema_without_owners_grants_or_replication(pg15: PgInstall) -> None:
    argv = dump_argv(pg15, schema="dr_staging_x")
    assert argv[0].endswith("pg_dump")
    assert {
        "--format=plain",
        "--no-owner",
        "--no-privileges",
        "--no-subscriptions",
        "--no-publications",
        "--no-password",
    } <= set(argv)
    assert '--schema="dr_staging_x"' in argv  # quoted: a name, not a pattern
    assert not any(a.startswith("--schema") for a in dump_argv(pg15, schema=None))


def test_the_load_is_all_or_nothing(pg15: PgInstall) -> None:
    argv = load_argv(pg15)
    assert argv[0].endswith("psql")
    assert {"--single-transaction", "--set=ON_ERROR_STOP=1", "--no-psqlrc", "--no-password"} <= set(argv)
    assert not any("password=" in a.lower() or "postgresql://" in a for a in dump_argv(pg15, schema="s") + argv)
