"""The throw-away GNUPGHOME each gpg operation runs in, and the one gpg-agent it gets.

The agent is started here, never on demand by gpg (every gpg call passes ``--no-autostart``),
and it cannot outlive the process that owns the home: it runs as the parent of a small
*guardian* shell whose stdin is a pipe only the owner holds. When the block ends the owner
closes the pipe; when the owner dies (SIGKILL, a killed Airflow task) the kernel closes it. Either
way the guardian then stops the agent and removes the home with any secret key imported into
it. The guardian has a session of its own, so killing the owner's process group leaves it to
do that. (An agent started on demand daemonizes into a session of its own and outlives a
killed owner for good, with the home and its key left on disk.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hms_dr.errors import ToolFailed

MAX_GPG_HOME_PARENT_CHARS = 64
AGENT_START_TIMEOUT_S = 60.0
AGENT_POLL_S = 0.05
AGENT_START_LOG = "agent-start.log"
# $0 is the home. `cat` returns at end-of-file on stdin: the owner closed the pipe or died.
GUARDIAN_SCRIPT = 'cat >/dev/null; gpgconf --homedir "$0" --kill all; rm -rf -- "$0"'


@contextmanager
def gpg_home(parent: Path) -> Iterator[Path]:
    """A private GNUPGHOME under ``parent`` with its own gpg-agent; both are gone when the block
    ends or this process dies."""
    # gpg-agent's socket lives in the home directory and a Unix socket path is limited to ~107
    # bytes: a deep staging directory would make every secret-key operation fail ("No agent").
    if len(str(parent.absolute())) > MAX_GPG_HOME_PARENT_CHARS:
        parent = Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="gnupg-", dir=parent))
    os.chmod(home, 0o700)
    guardian: subprocess.Popen[bytes] | None = None
    try:
        guardian = start_guarded_agent(home)
        yield home
    finally:
        if guardian is not None:
            release_guardian(guardian)
        if home.exists():  # the guardian could not do it: it never started, or was killed
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30)
            shutil.rmtree(home, ignore_errors=True)


def start_guarded_agent(home: Path) -> subprocess.Popen[bytes]:
    """Start ``home``'s gpg-agent with its guardian; returns the guardian once the agent answers."""
    # `gpg-agent --daemon -- <command>` forks the agent off and execs the command in its own
    # process; the agent also shuts itself down within a few seconds of that process ending.
    argv = ["gpg-agent", "--homedir", str(home), "--daemon", "--", "sh", "-c", GUARDIAN_SCRIPT, str(home)]
    with (home / AGENT_START_LOG).open("wb") as start_log:
        try:
            guardian = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=start_log,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ToolFailed("gpg-agent", None, "gpg-agent not found on PATH", hint="apt-get install gnupg") from None
    try:
        wait_until_agent_answers(home, guardian)
    except BaseException:
        release_guardian(guardian)
        raise
    return guardian


def agent_pid(home: Path) -> int | None:
    """The pid of the gpg-agent serving ``home``, or None when none answers (none is started)."""
    asked = subprocess.run(
        ["gpg-connect-agent", "--no-autostart", "--homedir", str(home), "GETINFO pid", "/bye"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # gpg-connect-agent exits 0 even when no agent runs: only a data line ("D <pid>") says one does.
    for line in asked.stdout.splitlines():
        if line.startswith("D ") and line[2:].strip().isdigit():
            return int(line[2:].strip())
    return None


def wait_until_agent_answers(home: Path, guardian: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + AGENT_START_TIMEOUT_S
    while agent_pid(home) is None:
        if guardian.poll() is not None or time.monotonic() > deadline:
            raise ToolFailed("gpg-agent", guardian.poll(), _last_line(home / AGENT_START_LOG) or "did not answer")
        time.sleep(AGENT_POLL_S)


def release_guardian(guardian: subprocess.Popen[bytes]) -> None:
    """Close the guardian's stdin, so it stops the agent and removes the home, and reap it."""
    if guardian.stdin is not None:
        guardian.stdin.close()
    try:
        guardian.wait(timeout=30)
    except subprocess.TimeoutExpired:
        guardian.kill()
        guardian.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
