"""`make airflow`: serve the sandbox in the Airflow UI with `airflow standalone`.

Picks port 8080 (or a free one, or ``--port``), gives the UI a known admin login whose password is
generated once and kept in the sandbox (mode 0600), prints the URL and the login, then runs
`airflow standalone` (scheduler, dag-processor, api-server, triggerer, LocalExecutor workers).

`airflow standalone` does not stop its components when it gets SIGTERM or SIGHUP, and a terminal's
Ctrl-C reaches each component on its own, so some outlive it. It therefore runs in a session of its
own, and this process stays as its supervisor: SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal
closed) here stops the whole tree — SIGTERM to every process, SIGKILL to what still runs after a
grace period — and so does the standalone ending by itself. Its session id is recorded in the
sandbox's state, so `make stop` stops a tree left running when this supervisor was killed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from hms_sandbox.airflow_env import airflow_process_env
from hms_sandbox.cluster import port_is_open
from hms_sandbox.detached import stop_session_tree
from hms_sandbox.lifecycle import (
    STANDALONE_MARKER_VARIABLE,
    STANDALONE_STOP_GRACE_S,
    forget_standalone,
    record_standalone,
    running_standalone,
)
from hms_sandbox.policy_file import SANDBOX_APPROVER
from hms_sandbox.state import load_sandbox

ADMIN_USER = "admin"
PREFERRED_PORT = 8080
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def ui_password(state_dir: Path) -> tuple[Path, str]:
    """The passwords file of Airflow's simple auth manager, created once with a random password."""
    path = state_dir / "ui-passwords.json"
    if path.exists():
        return path, json.loads(path.read_text())[ADMIN_USER]
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({ADMIN_USER: password}, out)
    return path, password


def choose_port() -> int:
    from hms_sandbox.cluster import free_port

    return PREFERRED_PORT if not port_is_open(PREFERRED_PORT) else free_port()


class _Signals:
    """Records the first stop signal; the wait loop polls it (a handler must not do the work)."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hms_sandbox.standalone", description="Serve the sandbox in the Airflow UI."
    )
    parser.add_argument("--port", type=int, default=None, help="port of the UI and API (default 8080, or a free one)")
    args = parser.parse_args(argv)
    sandbox = load_sandbox()
    running = running_standalone(sandbox.paths)
    if running is not None:
        sys.stderr.write(
            f"Airflow already runs for this sandbox (session {running['pid']}, http://localhost:{running['port']}); "
            "stop it with `make stop` first\n"
        )
        return 1
    passwords_file, password = ui_password(sandbox.state_dir)
    port = args.port or choose_port()
    venv_bin = Path(sys.executable).parent
    # PYTHONPATH: the product's plugins/ alone (this supervisor has sandbox/ on its path too).
    env = {
        **airflow_process_env(os.environ, sandbox.paths.plugins_dir),
        # `airflow standalone` starts its components as `airflow ...` from PATH: this venv's.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        # Marks every process of the tree as this sandbox's, for `make stop` (see stop_sandbox).
        STANDALONE_MARKER_VARIABLE: str(sandbox.state_dir),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,{SANDBOX_APPROVER}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
    }
    sys.stdout.write(
        f"Airflow UI: http://localhost:{port}  login: {ADMIN_USER} / {password}\n"
        f"(DR swap approvals, four eyes: login {SANDBOX_APPROVER}, password in {passwords_file} once Airflow is up)\n"
        f"(sandbox: PostgreSQL 127.0.0.1:{sandbox.pg_port}, S3 {sandbox.s3_endpoint_url}; DAGs start paused; Ctrl-C stops it)\n"
    )
    sys.stdout.flush()

    # Handlers before the start: a signal arriving while the tree starts must still stop it.
    stop = _Signals()
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, stop)
    standalone = subprocess.Popen(
        [str(venv_bin / "airflow"), "standalone"],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        record_standalone(sandbox.paths, session=standalone.pid, port=port)
        while stop.received is None and standalone.poll() is None:
            time.sleep(0.2)
    finally:
        why = (
            f"got {signal.Signals(stop.received).name}"
            if stop.received
            else f"airflow standalone exited {standalone.poll()}"
        )
        _tell(f"Stopping Airflow ({why})…")
        stopped = stop_session_tree(standalone.pid, grace_s=STANDALONE_STOP_GRACE_S, children=[standalone.pid])
        forget_standalone(sandbox.paths, session=standalone.pid)
        _tell(
            f"Airflow stopped: {stopped.processes} processes in {stopped.seconds} s"
            f"{f', {stopped.killed} needed SIGKILL' if stopped.killed else ''}"
        )
    if stop.received is not None:
        _exit_by_signal(stop.received)
    code = standalone.returncode or 0
    return 128 - code if code < 0 else code  # killed by signal N (`make stop`): 128 + N, as a shell says


def _tell(line: str) -> None:
    # After SIGHUP the terminal is gone and writing to it fails: the tree must be stopped anyway.
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError:
        pass


def _exit_by_signal(signum: int) -> None:
    # Die of the signal itself, as a program without a handler would: make and the shell then
    # report an interrupted command (and a shell running a script stops at Ctrl-C).
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if __name__ == "__main__":
    raise SystemExit(main())
