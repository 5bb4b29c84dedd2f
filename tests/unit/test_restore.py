"""pg_restore into a scratch database: parallel, all or nothing, and without production's roles."""

from __future__ import annotations

from pathlib import Path

from hms_dr.pginstalls import PgInstall
from hms_dr.restore import pg_restore_argv


def test_pg_restore_runs_parallel_and_stops_at_the_first_error(pg15: PgInstall) -> None:
    argv = pg_restore_argv(pg15, Path("/tmp/dump.plain"), dbname="hms_restore_test_x", jobs=4)
    assert "--exit-on-error" in argv and "--jobs=4" in argv and "--dbname=hms_restore_test_x" in argv
    assert "--no-owner" in argv and "--no-privileges" in argv
