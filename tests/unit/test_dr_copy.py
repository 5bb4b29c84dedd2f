"""The copy into production: pg_dump of exactly one schema, psql as one transaction that stops at
the first error, and no secret in either argv."""

from __future__ import annotations

from hms_dr.dr.copy import dump_argv, load_argv
from hms_dr.dr.staging import SCRATCH_PREFIX, scratch_cluster_home, scratch_database_name


def test_the_dump_is_one_exact_schema_without_owners_grants_or_replication() -> None:
    argv = dump_argv(schema="dr_staging_x")
    assert argv[0].endswith("pg_dump")
    assert {"--format=plain", "--no-owner", "--no-privileges", "--no-subscriptions", "--no-publications", "--no-password"} <= set(argv)
    assert '--schema="dr_staging_x"' in argv  # quoted: a name, not a pattern
    assert not any(a.startswith("--schema") for a in dump_argv(schema=None))


def test_the_load_is_all_or_nothing() -> None:
    argv = load_argv()
    assert argv[0].endswith("psql")
    assert {"--single-transaction", "--set=ON_ERROR_STOP=1", "--no-psqlrc", "--no-password"} <= set(argv)
    assert not any("password=" in a.lower() or "postgresql://" in a for a in dump_argv(schema="s") + argv)


def test_scratch_names_are_plain_identifiers_and_cluster_paths_stay_short() -> None:
    from pathlib import Path

    name = scratch_database_name("manual__2026_11_24t14_05_00_123456_00_00")
    assert name.startswith(SCRATCH_PREFIX) and len(name) <= 63
    assert scratch_database_name("k") != scratch_database_name("k")
    home = scratch_cluster_home(Path("/var/lib/hms-dr/pitr"), "manual__2026_11_24t14_05_00_123456_00_00")
    assert home.home.parent.name == "dr-restore" and len(str(home.socket_dir)) < 90
