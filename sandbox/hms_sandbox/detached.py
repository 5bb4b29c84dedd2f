"""A helper server of the sandbox (moto, the SMTP sink) running detached from whoever started it:
its own session, a pid file and a log file in its work directory, started and stopped by pid so
that a later `make stop` from another shell can find it.

Also how a whole process tree started in a session of its own (`airflow standalone`: scheduler,
API server, triggerer, LocalExecutor workers, task processes) is found and stopped, from /proc.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hms_dr.errors import HmsDrError, ToolFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetachedProcess:
    """``name`` names the program in messages and the files; ``marker`` must appear in its command
    line, which guards against a pid that the system has since given to another process."""

    name: str
    workdir: Path
    marker: bytes

    @property
    def pid_file(self) -> Path:
        return self.workdir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running process, or None."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        return pid if self._alive(pid) else None

    def start(
        self,
        argv: Sequence[str],
        *,
        answers: Callable[[], bool],
        timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Start ``argv`` in its own session and wait until ``answers()``; its pid."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=None if env is None else dict(env),
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
        deadline = time.monotonic() + timeout_s
        while not answers():
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ToolFailed(self.name, process.returncode, self.last_log_line(), hint=f"see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise ToolFailed(self.name, None, f"no answer after {timeout_s} s", hint=f"see {self.log_file}")
            time.sleep(0.1)
        return process.pid

    def stop(self, timeout_s: float = 10) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``; whether a process was running."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self._alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if self._alive(pid):
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def last_log_line(self) -> str:
        try:
            lines = [
                line
                for line in self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.strip()
            ]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def _alive(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            return not cmdline.exists() or self.marker in cmdline.read_bytes()
        except OSError:
            return False


def _reap(pid: int) -> None:
    # When this process started the server, collect its exit status so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class ProcessEntry:
    """One process as /proc/<pid>/stat shows it. ``started`` (clock ticks after boot) tells a pid
    that the system has given to a new process apart from the one we saw."""

    pid: int
    ppid: int
    pgid: int
    session: int
    started: int
    zombie: bool


def read_process(pid: int) -> ProcessEntry | None:
    """The process ``pid``, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after the last ")" are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcessEntry(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        session=int(fields[3]),
        started=int(fields[19]),
        zombie=fields[0] in ("Z", "X"),
    )


def all_processes() -> dict[int, ProcessEntry]:
    """Every process on the machine, by pid."""
    found: dict[int, ProcessEntry] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            process = read_process(int(entry.name))
            if process is not None:
                found[process.pid] = process
    return found


def session_tree(session: int, processes: Mapping[int, ProcessEntry] | None = None) -> dict[int, ProcessEntry]:
    """The live processes of ``session`` and every live descendant of them: Airflow's task
    supervisor moves each task process into a process group of its own, and a task's tool may
    start a session of its own, but they stay children of a process of the session."""
    processes = all_processes() if processes is None else processes
    tree = {pid: p for pid, p in processes.items() if p.session == session and not p.zombie}
    children: dict[int, list[ProcessEntry]] = {}
    for process in processes.values():
        children.setdefault(process.ppid, []).append(process)
    pending = list(tree)
    while pending:
        for child in children.get(pending.pop(), []):
            if child.pid not in tree and not child.zombie:
                tree[child.pid] = child
                pending.append(child.pid)
    return tree


def environ_has(pid: int, marker: bytes) -> bool:
    """Whether the environment ``pid`` was started with holds ``marker`` (a whole ``NAME=value``)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


@dataclass(frozen=True)
class TreeStopped:
    """What stopping a tree took: how many processes there were, and how many needed SIGKILL."""

    processes: int
    killed: int
    seconds: float


def stop_session_tree(
    session: int,
    *,
    grace_s: float,
    kill_wait_s: float = 5,
    children: Iterable[int] = (),
    poll_s: float = 0.1,
) -> TreeStopped:
    """SIGTERM to every process of the session's tree, SIGKILL to whatever still runs after
    ``grace_s``; returns once none of them runs. ``children`` are pids this process started, reaped
    on the way so they do not linger as zombies. The tree is re-read on every poll: a process
    started meanwhile (a worker respawned, a task's tool) is stopped too, and a process that
    leaves the session stays known by pid and start time after its parent is gone.

    :raises HmsDrError: when a process survives SIGKILL for ``kill_wait_s`` (stuck in the kernel).
    """
    started = time.monotonic()
    known: dict[int, int] = {}  # pid -> start time

    def running() -> dict[int, ProcessEntry]:
        processes = all_processes()
        for pid, process in session_tree(session, processes).items():
            known.setdefault(pid, process.started)
        return {
            pid: processes[pid]
            for pid, ticks in known.items()
            if pid in processes and processes[pid].started == ticks and not processes[pid].zombie
        }

    def send(pids: Iterable[int], signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    terminated: set[int] = set()
    deadline = started + grace_s
    while True:
        alive = running()
        send(set(alive) - terminated, signal.SIGTERM)
        terminated |= set(alive)
        if not alive or time.monotonic() > deadline:
            break
        for pid in children:
            _reap(pid)
        time.sleep(poll_s)
    killed: set[int] = set()
    deadline = time.monotonic() + kill_wait_s
    while alive:
        log.warning(
            "%d process(es) still running %.0f s after SIGTERM: SIGKILL to %s", len(alive), grace_s, sorted(alive)
        )
        send(alive, signal.SIGKILL)
        killed |= set(alive)
        time.sleep(poll_s)
        for pid in children:
            _reap(pid)
        alive = running()
        if alive and time.monotonic() > deadline:
            raise HmsDrError(f"processes {sorted(alive)} survive SIGKILL", hint="see `ps -o pid,stat,wchan -p PID`")
    for pid in children:
        _reap(pid)
    return TreeStopped(processes=len(known), killed=len(killed), seconds=round(time.monotonic() - started, 1))
