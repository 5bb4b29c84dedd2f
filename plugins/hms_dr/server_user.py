"""Running PostgreSQL server programs (initdb, pg_ctl, postgres, pg_checksums) as the right OS user.

PostgreSQL's server programs refuse to run as root. When this process is root they run as the
``postgres`` OS user through ``runuser`` and the directories they own belong to it; as any other
user they run directly, as that user. The sandbox, the tests and point-in-time recovery all
start servers, so this lives in the engine.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hms_dr.errors import PreflightFailed, ToolFailed

log = logging.getLogger(__name__)

SERVER_OS_USER = "postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def server_user() -> str | None:
    """The OS user the server programs run as: ``postgres`` when we are root, else None (ourselves)."""
    return SERVER_OS_USER if os.geteuid() == 0 else None


def server_command(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Wrap argv so that it runs as the server user (``runuser`` when root)."""
    args = [os.fspath(a) for a in argv]
    user = server_user()
    return ["runuser", "-u", user, "--", *args] if user else args


def run_server_tool(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL server program as the server user and capture its output.

    :param check: raise :class:`ToolFailed` (tool name, exit code, last stderr line) on a non-zero exit.
    :param cwd: working directory; defaults to ``/`` so that root's home, which the server user
        cannot enter, never becomes the tool's working directory.
    """
    tool = Path(os.fspath(argv[0])).name
    full_env = None if env is None else {**os.environ, **env}
    log.debug("running %s as %s", tool, server_user() or "the current user")
    try:
        proc = subprocess.run(
            server_command(argv),
            input=input_text,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or Path("/"),
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolFailed(
            tool, None, f"not found: {exc.filename}", hint="install that PostgreSQL major or set HMS_DR_PG_BIN_<major>"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(tool, None, f"timed out after {timeout_s} s") from exc
    if check and proc.returncode != 0:
        if proc.stderr:
            log.error("%s stderr:\n%s", tool, proc.stderr.rstrip())
        raise ToolFailed(tool, proc.returncode, _last_line(proc.stderr) or _last_line(proc.stdout))
    return proc


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _server_ids() -> tuple[int, int, set[int]]:
    entry = pwd.getpwnam(SERVER_OS_USER)
    groups = set(os.getgrouplist(SERVER_OS_USER, entry.pw_gid))
    return entry.pw_uid, entry.pw_gid, groups


def _can_traverse(directory: Path, uid: int, gids: set[int]) -> bool:
    st = directory.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def ensure_reachable_by_server(path: Path) -> None:
    """Fail with a clear message when the server user cannot walk the existing directories above ``path`` (root only)."""
    if server_user() is None:
        return
    uid, _gid, gids = _server_ids()
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not _can_traverse(parent, uid, gids):
            raise PreflightFailed(
                f"directory {parent} is not traversable by the PostgreSQL server user {SERVER_OS_USER}",
                hint=f"chmod o+x {parent}, or put the sandbox somewhere else (HMS_DR_SANDBOX=/tmp/hms-dr-sandbox)",
            )


def prepare_server_dir(path: Path, mode: int = 0o700) -> None:
    """Create ``path`` for the server: owned by the server user when root, with ``mode``.

    Parents created here get o+x so the server user can walk through them; an existing
    parent the server user cannot traverse is an error naming that directory, raised before
    anything is created.
    """
    path = path.absolute()
    ensure_reachable_by_server(path)
    created_parents = [p for p in path.parents if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for parent in created_parents:
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    chown_to_server(path)
    path.chmod(mode)


def chown_to_server(path: Path) -> None:
    if server_user() is not None:
        uid, gid, _groups = _server_ids()
        os.chown(path, uid, gid)
