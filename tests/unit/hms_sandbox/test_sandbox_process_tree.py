"""Stopping a process tree started in a session of its own (how `make airflow` and `make stop`
end `airflow standalone`), on real processes: one that ignores SIGTERM, one that left for a
session of its own and one in a process group of its own, as Airflow's task processes do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hms_sandbox.detached import read_process, session_tree, stop_session_tree
from hms_sandbox.lifecycle import record_standalone, running_standalone
from hms_sandbox.state import SandboxPaths, save_state

TREE = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)"
    children = [
        subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE),  # needs SIGKILL
        subprocess.Popen(["sleep", "301"], start_new_session=True),  # a session of its own
        subprocess.Popen(["sleep", "302"], process_group=0),  # a process group of its own
    ]
    children[0].stdout.readline()  # its SIGTERM handler is set
    print(" ".join(str(c.pid) for c in children), flush=True)
    time.sleep(300)
    """
)


@pytest.fixture()
def tree(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    leader = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={"HMS_DR_SANDBOX": str(tmp_path / "sandbox"), "PATH": "/usr/bin:/bin"},
    )
    assert leader.stdout is not None
    children = [int(pid) for pid in leader.stdout.readline().split()]
    try:
        yield leader, children
    finally:
        for pid in [leader.pid, *children]:
            subprocess.run(["kill", "-KILL", str(pid)], capture_output=True, check=False)
        leader.wait()


def _running(pid: int) -> bool:
    process = read_process(pid)
    return process is not None and not process.zombie


def test_the_tree_holds_the_session_and_the_children_that_left_it(
    tree: tuple[subprocess.Popen[str], list[int]],
) -> None:
    leader, children = tree
    found = session_tree(leader.pid)
    assert set(found) == {leader.pid, *children}
    own_session = read_process(children[1])
    assert own_session is not None and own_session.session != leader.pid


def test_stop_terminates_the_tree_and_kills_what_ignores_sigterm(tree: tuple[subprocess.Popen[str], list[int]]) -> None:
    leader, children = tree
    started = time.monotonic()
    stopped = stop_session_tree(leader.pid, grace_s=2, children=[leader.pid])
    assert not [pid for pid in [leader.pid, *children] if _running(pid)]
    assert (stopped.processes, stopped.killed) == (4, 1)
    assert 2 <= time.monotonic() - started < 10
    assert leader.poll() is not None


def test_a_recorded_session_counts_only_with_the_sandbox_marker(
    tmp_path: Path, tree: tuple[subprocess.Popen[str], list[int]]
) -> None:
    # After a reboot the recorded session id may belong to any process: only one started with
    # this sandbox's HMS_DR_SANDBOX is taken for its Airflow, and so stopped by `make stop`.
    leader, _ = tree
    ours = SandboxPaths.at(tmp_path / "sandbox")
    ours.state_dir.mkdir()
    save_state(ours, {})
    record_standalone(ours, session=leader.pid, port=8080)
    running = running_standalone(ours)
    assert running is not None and (running["pid"], running["port"]) == (leader.pid, 8080)

    other = SandboxPaths.at(tmp_path / "another-sandbox")
    other.state_dir.mkdir()
    save_state(other, {})
    record_standalone(other, session=leader.pid, port=8080)
    assert running_standalone(other) is None
