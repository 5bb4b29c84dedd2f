"""Unit-test fixtures: nothing here starts a server or runs a PostgreSQL program."""

from __future__ import annotations

from pathlib import Path

import pytest

from hms_dr.pginstalls import PgInstall

PROGRAMS = (
    "pg_dump", "pg_restore", "psql", "pg_amcheck", "pg_basebackup", "pg_verifybackup", "pg_waldump",
    "pg_combinebackup", "pg_ctl", "initdb", "postgres", "pg_checksums",
)  # fmt: skip


def fake_install(root: Path, major: int, version: str) -> PgInstall:
    """A bin directory holding (empty) files of every program hms-dr runs: argv builders see
    real paths, and nothing ever executes them."""
    bin_dir = root / f"pg{major}" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in PROGRAMS:
        (bin_dir / name).touch()
    return PgInstall(major, version, bin_dir)


@pytest.fixture
def pg15(tmp_path: Path) -> PgInstall:
    return fake_install(tmp_path, 15, "15.18")


@pytest.fixture
def pg18(tmp_path: Path) -> PgInstall:
    return fake_install(tmp_path, 18, "18.6")
