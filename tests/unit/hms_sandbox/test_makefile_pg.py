"""`make ... PG=18` runs the sandbox on PostgreSQL 18 in a sandbox of its own, and `make clean`
removes every major's sandbox: read from make's own database (`make -n -p`), nothing started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def make_variables(*args: str) -> dict[str, str]:
    """The variables of the Makefile as make evaluates them with ``args`` (``-p``, nothing run)."""
    done = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "--no-print-directory", "-n", "-p", *args, "help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = re.findall(r"^([A-Z_][A-Z0-9_]*) :?= (.*)$", done.stdout, flags=re.MULTILINE)
    return dict(found)


def test_without_pg_the_sandbox_is_15s_own_folder_and_no_major_is_asked_for() -> None:
    variables = make_variables()
    assert variables["HMS_DR_SANDBOX"] == f"{REPO_ROOT}/.sandbox"
    assert "HMS_DR_SANDBOX_PG" not in variables


def test_pg_18_asks_the_sandbox_for_18_in_a_folder_of_its_own() -> None:
    variables = make_variables("PG=18")
    assert variables["HMS_DR_SANDBOX"] == f"{REPO_ROOT}/.sandbox-pg18"
    assert variables["HMS_DR_SANDBOX_PG"] == "18"


def clean_commands() -> str:
    """What `make clean` would run (``-n``: nothing run)."""
    return subprocess.run(
        ["make", "-C", str(REPO_ROOT), "--no-print-directory", "-n", "clean"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_clean_stops_and_removes_every_majors_sandbox() -> None:
    commands = clean_commands()
    assert f"{REPO_ROOT}/.sandbox-pg*" in commands and "hms_sandbox stop" in commands
    assert re.search(r"^rm -rf .*\.sandbox-pg\*", commands, flags=re.MULTILINE)


def test_clean_also_removes_the_tests_state_kept_in_the_temporary_directory() -> None:
    """A clone the server cannot reach (a root-owned `mktemp -d`) keeps its test servers' state in
    /tmp/hms-dr-test-<digest>: `make clean` stops those servers and removes that folder too."""
    outside = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests/workdirs.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}/plugins:{REPO_ROOT}/sandbox"},
    ).stdout.strip()
    assert re.fullmatch(r".*/hms-dr-test-[0-9a-f]{12}", outside)
    commands = clean_commands()
    assert f"{outside}/*" in commands
    assert re.search(rf"^rm -rf .*{re.escape(outside)}$", commands, flags=re.MULTILINE)
