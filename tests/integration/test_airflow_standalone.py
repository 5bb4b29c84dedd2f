"""`make airflow` stops everything it started: on SIGTERM, on Ctrl-C (SIGINT to the terminal's
foreground process group), when its terminal closes (SIGHUP) and, after its supervisor was
killed outright, on `make stop`.

Each test starts the real `python -m hms_sandbox.standalone` (what `make airflow` execs) on a
sandbox of this module's own, waits until the API server answers and reports the scheduler, the
triggerer and the dag-processor healthy, takes the whole process tree from /proc (psutil, not the
code under test), then stops it and checks that not one of those processes still runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from workdirs import state_root

from hms_sandbox import Sandbox, sandbox_status, start_sandbox, stop_sandbox
from hms_sandbox.airflow_env import build_airflow_env
from hms_sandbox.cluster import free_port

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

REPO_ROOT = Path(__file__).resolve().parents[2]
# What `make` exports for the sandbox's own commands: the engine (plugins/) and the sandbox (sandbox/).
SANDBOX_PYTHONPATH = os.pathsep.join(str(REPO_ROOT / root) for root in ("plugins", "sandbox"))
SCALE_MB = 5
# Airflow's four components coming up on a busy 2-core machine (other test workers run too).
SERVE_TIMEOUT_S = 180
# The supervisor's grace period (20 s), then SIGKILL and a little slack to see the processes gone.
STOP_BOUND_S = 35
COMPONENTS = ("airflow scheduler", "airflow dag-processor", "airflow triggerer", "airflow api_server")
LOCAL_EXECUTOR_WORKER = "airflow worker -- LocalExecutor"


@pytest.fixture(scope="module")
def sandbox(worker_id: str) -> Iterator[Sandbox]:
    """A sandbox of its own: the last test stops it, which the shared one must survive."""
    # Under the repository like the shared ones (the postgres OS user must traverse its parents).
    state_dir = state_root() / f"standalone-{worker_id}"
    shutil.rmtree(state_dir, ignore_errors=True)
    try:
        yield start_sandbox(state_dir, scale_mb=SCALE_MB)
    finally:
        stop_sandbox(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


class Standalone:
    """`python -m hms_sandbox.standalone` started as a shell starts a job: in a process group
    of its own, which is what a terminal's Ctrl-C goes to. With ``terminal``, in a session whose
    controlling terminal is a pseudo-terminal this test holds, as in a terminal window: closing
    it hangs the terminal up (SIGHUP, and writes to it fail)."""

    def __init__(self, sandbox: Sandbox, name: str, *, terminal: bool = False) -> None:
        self.sandbox = sandbox
        self.log_path = sandbox.state_dir / f"standalone-{name}.log"
        env = {
            **os.environ,
            **build_airflow_env(sandbox),
            "HMS_DR_SANDBOX": str(sandbox.state_dir),
            "PYTHONPATH": SANDBOX_PYTHONPATH,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # as `make airflow` has it
        }
        argv = [sys.executable, "-m", "hms_sandbox.standalone", "--port", str(free_port())]
        self.terminal: int | None = None
        self.copying: threading.Thread | None = None
        self.closing = threading.Event()
        if terminal:
            self.log_path.write_bytes(b"")
            self.terminal, replica = pty.openpty()
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdin=replica,
                stdout=replica,
                stderr=replica,
                start_new_session=True,
                preexec_fn=_take_controlling_terminal,
            )
            os.close(replica)
            self.copying = threading.Thread(target=self._copy_terminal, daemon=True)
            self.copying.start()
        else:
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        self.seen: dict[int, tuple[float, str]] = {}

    def _copy_terminal(self) -> None:
        # Drain the terminal into the log (a full pseudo-terminal would block Airflow's output),
        # polling so that close_terminal() can stop this thread before it closes the terminal.
        assert self.terminal is not None
        with self.log_path.open("ab") as log:
            while not self.closing.is_set():
                if select.select([self.terminal], [], [], 0.2)[0]:
                    try:
                        data = os.read(self.terminal, 65536)
                    except OSError:  # EIO: the other side is gone
                        return
                    log.write(data)
                    log.flush()

    def close_terminal(self) -> None:
        """Close the terminal window: the kernel hangs up the session's terminal."""
        assert self.terminal is not None and self.copying is not None
        self.closing.set()
        self.copying.join()
        os.close(self.terminal)
        self.terminal = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def port(self) -> int | None:
        # The URL it prints (the port it chose; the same as --port once it honours that).
        found = re.search(r"Airflow UI: http://localhost:(\d+)", self.log_path.read_text(errors="replace"))
        return int(found.group(1)) if found else None

    def wait_until_serving(self) -> dict[str, Any]:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"the standalone exited {self.process.returncode}:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"Airflow did not come up in {SERVE_TIMEOUT_S} s:\n{self.log_tail()}"
            port = self.port()
            if port is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as answer:
                        health: dict[str, Any] = json.load(answer)
                    if all(
                        (health.get(c) or {}).get("status") == "healthy"
                        for c in ("scheduler", "triggerer", "dag_processor")
                    ):
                        return health
                except OSError:
                    pass
            time.sleep(1)

    def collect_tree(self) -> dict[int, tuple[float, str]]:
        """Every process the standalone started so far (pid -> create time, command line), also
        kept for the cleanup; waits for the LocalExecutor's workers, forked once the scheduler runs."""
        deadline = time.monotonic() + 60
        while True:
            tree = {
                p.pid: (p.create_time(), " ".join(p.cmdline()))
                for p in psutil.Process(self.process.pid).children(recursive=True)
                if p.status() != psutil.STATUS_ZOMBIE
            }
            self.seen.update(tree)
            if any(LOCAL_EXECUTOR_WORKER in command for _, command in tree.values()) or time.monotonic() > deadline:
                return tree
            time.sleep(1)

    def still_running(self, tree: dict[int, tuple[float, str]]) -> dict[int, str]:
        """The processes of ``tree`` still running (not the same pid given to a new process), and
        any other process started with this sandbox's marker in its environment."""
        running: dict[int, str] = {}
        for pid, (created, command) in tree.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    running[pid] = command
            except psutil.NoSuchProcess:
                pass
        for process in psutil.process_iter(["pid", "environ", "cmdline", "status"]):
            environ = process.info["environ"] or {}
            ours = environ.get("HMS_DR_SANDBOX") == str(self.sandbox.state_dir)
            if ours and process.info["status"] != psutil.STATUS_ZOMBIE and process.pid != os.getpid():
                running[process.pid] = " ".join(process.info["cmdline"] or [])
        return running

    def wait_gone(self, tree: dict[int, tuple[float, str]], bound_s: float) -> dict[int, str]:
        deadline = time.monotonic() + bound_s
        while (running := self.still_running(tree)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return running

    def kill_leftovers(self) -> None:
        """Cleanup whatever the test left (a failing run must not leave 40 processes behind)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.terminal is not None:
            self.close_terminal()
        for pid in self.still_running(self.seen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _take_controlling_terminal() -> None:
    # In the child, after setsid(): its stdin (the pseudo-terminal) becomes the new session's
    # controlling terminal, as a terminal emulator does for the shell it starts.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture()
def standalones(sandbox: Sandbox) -> Iterator[Any]:
    started: list[Standalone] = []

    def start(name: str, *, terminal: bool = False) -> Standalone:
        standalone = Standalone(sandbox, name, terminal=terminal)
        started.append(standalone)
        return standalone

    yield start
    for standalone in started:
        standalone.kill_leftovers()


def _recorded(sandbox: Sandbox) -> dict[str, Any]:
    return dict(json.loads(sandbox.paths.state_file.read_text()).get("airflow") or {})


def _components(tree: dict[int, tuple[float, str]]) -> dict[str, int]:
    return {
        name: sum(1 for _, command in tree.values() if name in command) for name in (*COMPONENTS, LOCAL_EXECUTOR_WORKER)
    }


@pytest.mark.parametrize(
    "signum, how",
    [
        pytest.param(
            signal.SIGTERM, "process", id="SIGTERM to the process (kill PID, make forwarding its own SIGTERM)"
        ),
        pytest.param(signal.SIGINT, "group", id="SIGINT to its process group (Ctrl-C in the terminal)"),
        pytest.param(signal.SIGHUP, "hangup", id="SIGHUP from the kernel (the terminal window closed)"),
    ],
)
def test_a_stop_signal_stops_every_process_it_started(
    sandbox: Sandbox, standalones: Any, signum: int, how: str
) -> None:
    standalone = standalones(signum.name, terminal=how == "hangup")
    standalone.wait_until_serving()
    tree = standalone.collect_tree()
    components = _components(tree)
    assert all(components[name] >= 1 for name in COMPONENTS), (
        f"not the whole of Airflow: {components}\n{standalone.log_tail()}"
    )
    recorded = _recorded(sandbox)

    sent_at = time.monotonic()
    if how == "group":
        os.killpg(standalone.process.pid, signum)
    elif how == "hangup":
        standalone.close_terminal()
    else:
        standalone.process.send_signal(signum)
    left = standalone.wait_gone(tree, STOP_BOUND_S)
    assert not left, f"{len(left)} of {len(tree)} processes still run {STOP_BOUND_S} s after {signum.name}: {left}"
    standalone.process.wait(timeout=10)
    took = time.monotonic() - sent_at
    # It dies of the signal, as a program without a handler would: make and the shell then see an interrupted command.
    assert standalone.process.returncode == -signum, standalone.log_tail()
    if how != "hangup":  # a hung-up terminal shows nothing more
        assert "Airflow stopped" in standalone.log_tail(), standalone.log_tail()
    # While it ran, state.json named its session for `make stop`; now it names none.
    assert recorded.get("pid") in tree, recorded
    assert _recorded(sandbox)["pid"] is None
    # The executor fits the machine: one LocalExecutor worker per core (Airflow's default forks 32).
    assert components[LOCAL_EXECUTOR_WORKER] == max(2, os.cpu_count() or 2), components
    print(f"{signum.name}: {len(tree)} processes ({components}) stopped in {took:.1f} s")


def _pythonpaths(tree: dict[int, tuple[float, str]]) -> dict[str, str]:
    """The PYTHONPATH each process of ``tree`` that still runs was started with, by command line
    ("" without one)."""
    found = {}
    for pid, (_, command) in tree.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            found[command] = psutil.Process(pid).environ().get("PYTHONPATH", "")
    return found


def test_make_stop_stops_a_standalone_whose_supervisor_was_killed(sandbox: Sandbox, standalones: Any) -> None:
    standalone = standalones("orphaned")
    standalone.wait_until_serving()
    tree = standalone.collect_tree()
    # Airflow runs the product alone, as in production: its processes have plugins/ on their
    # PYTHONPATH, not the sandbox, which its supervisor (started as `make airflow` starts it) has.
    # (Those that set their process title read back without one: setproctitle overwrites the
    # environment block psutil reads.)
    assert psutil.Process(standalone.process.pid).environ()["PYTHONPATH"] == SANDBOX_PYTHONPATH
    pythonpaths = _pythonpaths(tree)
    assert {entry for path in pythonpaths.values() for entry in path.split(os.pathsep) if entry} == {
        str(REPO_ROOT / "plugins")
    }, pythonpaths
    _, status_while_running = sandbox_status(sandbox.state_dir)

    standalone.process.kill()  # SIGKILL: no handler runs, as when make's terminal is killed with it
    standalone.process.wait()
    time.sleep(2)
    orphans = standalone.still_running(tree)
    assert any("airflow scheduler" in command for command in orphans.values()), (
        "the scenario needs Airflow left running"
    )

    stopped = subprocess.run(
        [sys.executable, "-m", "hms_sandbox", "stop", "--state-dir", str(sandbox.state_dir)],
        env={**os.environ, "PYTHONPATH": SANDBOX_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=STOP_BOUND_S + 60,
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = standalone.still_running(tree)
    assert not left, f"`make stop` left {len(left)} of {len(orphans)} processes: {left}"
    assert "stopped airflow standalone" in stopped.stderr
    assert _recorded(sandbox)["pid"] is None
    # `status` showed it running (and how to stop it), and no longer does.
    assert any(line.startswith("airflow ui running") for line in status_while_running), status_while_running
    _, lines = sandbox_status(sandbox.state_dir)
    assert not any(line.startswith("airflow ui running") for line in lines), lines
