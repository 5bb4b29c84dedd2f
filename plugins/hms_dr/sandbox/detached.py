"""A helper server of the sandbox (moto, the SMTP sink) running detached from whoever started it:
its own session, a pid file and a log file in its work directory, started and stopped by pid so
that a later `make stop` from another shell can find it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hms_dr.errors import ToolFailed

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
        self, argv: Sequence[str], *, answers: Callable[[], bool], timeout_s: float, env: Mapping[str, str] | None = None
    ) -> int:
        """Start ``argv`` in its own session and wait until ``answers()``; its pid."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=None if env is None else dict(env), start_new_session=True,
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
            lines = [line for line in self.log_file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
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
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
