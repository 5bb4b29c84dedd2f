"""A local PostgreSQL 15 cluster built with ``initdb`` for the sandbox, the tests and the benchmarks.

When this process runs as root, every server-side program (initdb, pg_ctl, postgres, pg_checksums)
runs as the ``postgres`` OS user through ``runuser`` and the server's directories belong to it;
as any other user the programs run directly, as that user.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hms_dr.errors import PreflightFailed, ToolFailed

log = logging.getLogger(__name__)

PG_BIN = Path(os.environ.get("HMS_DR_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_OS_USER = "postgres"
SUPERUSER = "postgres"
_CONF_BLOCK_MARKER = "# --- hms-dr LocalCluster settings (appended by hms_dr.sandbox.cluster) ---"
# A Unix socket path (directory + "/.s.PGSQL.<port>") must fit in sun_path (108 bytes on Linux).
_MAX_SOCKET_DIR_CHARS = 90


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
        raise ToolFailed(tool, None, f"not found: {exc.filename}", hint=f"install PostgreSQL 15 or set HMS_DR_PG_BIN (now {PG_BIN})") from exc
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
    _chown_to_server(path)
    path.chmod(mode)


def _chown_to_server(path: Path) -> None:
    if server_user() is not None:
        uid, gid, _groups = _server_ids()
        os.chown(path, uid, gid)


def _conf_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _initdb_locale() -> str:
    """C.UTF-8 when the C library has it (sorts like C, stores UTF-8), else plain C."""
    try:
        available = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "C"
    names = {line.strip().lower().replace("-", "") for line in available.splitlines()}
    return "C.UTF-8" if "c.utf8" in names else "C"


@dataclass
class LocalCluster:
    """One PostgreSQL cluster on 127.0.0.1: its data directory, port and server log."""

    data_dir: Path
    port: int
    log_file: Path
    socket_dir: Path | None = None

    @property
    def socket_directory(self) -> Path:
        """The Unix socket directory: ``sockets/`` beside the data directory unless given."""
        return self.socket_dir if self.socket_dir is not None else self.data_dir.parent / "sockets"

    def is_initialized(self) -> bool:
        """Tell whether initdb has completed in the data directory."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(
        self,
        superuser_password: str,
        *,
        data_checksums: bool = True,
        conf: Mapping[str, str] | None = None,
        conf_fragment: Path | None = None,
    ) -> None:
        """Run initdb (scram-sha-256 for every connection) and append this cluster's settings.

        Refuses a data directory that is not empty. ``conf`` entries come after the fragment
        include, so they win over it.
        """
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise PreflightFailed(f"data directory {self.data_dir} is not empty; initdb refused", hint="choose an empty directory")
        socket_dir = self.socket_directory.absolute()
        if len(str(socket_dir)) > _MAX_SOCKET_DIR_CHARS:
            raise PreflightFailed(f"socket directory {socket_dir} is longer than {_MAX_SOCKET_DIR_CHARS} characters", hint="use a shorter state directory")
        if conf_fragment is not None:
            ensure_reachable_by_server(conf_fragment)
        for directory in (self.data_dir, self.log_file.parent, socket_dir):
            prepare_server_dir(directory, 0o700)
        self._run_initdb(superuser_password, data_checksums=data_checksums)
        self._append_conf(socket_dir, conf or {}, conf_fragment)
        log.info("initialized PostgreSQL cluster in %s (port %d, checksums %s)", self.data_dir, self.port, "on" if data_checksums else "off")

    def _run_initdb(self, superuser_password: str, *, data_checksums: bool) -> None:
        # The password file must be readable by the server user only, and gone afterwards.
        fd, name = tempfile.mkstemp(prefix=".initdb-pw-", dir=self.data_dir.parent)
        pwfile = Path(name)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(superuser_password + "\n")
            pwfile.chmod(0o600)
            _chown_to_server(pwfile)
            argv: list[str | os.PathLike[str]] = [
                PG_BIN / "initdb", "-D", self.data_dir.absolute(), "-U", SUPERUSER,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", f"--locale={_initdb_locale()}",
            ]
            if data_checksums:
                argv.append("--data-checksums")
            run_server_tool(argv, timeout_s=300)
        finally:
            pwfile.unlink(missing_ok=True)

    def _append_conf(self, socket_dir: Path, conf: Mapping[str, str], conf_fragment: Path | None) -> None:
        lines = [
            "",
            _CONF_BLOCK_MARKER,
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = {_conf_value(str(socket_dir))}",
        ]
        if conf_fragment is not None:
            lines.append(f"include = {_conf_value(str(conf_fragment.absolute()))}")
        lines.extend(f"{key} = {_conf_value(str(value))}" for key, value in conf.items())
        # Appending as root keeps the file's owner (the server user) and mode.
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    def _pg_ctl(self, *args: str, check: bool = True, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        return run_server_tool([PG_BIN / "pg_ctl", "-D", self.data_dir.absolute(), *args], check=check, timeout_s=timeout_s)

    def is_running(self) -> bool:
        """Tell whether a postmaster serves this data directory (``pg_ctl status``)."""
        if not self.is_initialized():
            return False
        return self._pg_ctl("status", check=False, timeout_s=30).returncode == 0

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, or None when it is not running."""
        if not self.is_running():
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout_s: float = 60) -> None:
        """Start the server and wait until it accepts connections; no-op when already running."""
        if self.is_running():
            log.info("PostgreSQL in %s already running on port %d", self.data_dir, self.port)
            return
        if port_is_open(self.port):
            raise PreflightFailed(f"port {self.port} on 127.0.0.1 is taken by another program; cannot start {self.data_dir}")
        seconds = str(max(1, int(timeout_s)))
        try:
            self._pg_ctl("start", "-w", "-t", seconds, "-l", str(self.log_file.absolute()), timeout_s=timeout_s + 30)
        except ToolFailed as exc:
            raise ToolFailed(exc.tool, exc.exit_code, exc.last_stderr_line, hint=f"see the server log {self.log_file}") from exc
        log.info("PostgreSQL started on 127.0.0.1:%d (data %s)", self.port, self.data_dir)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``); no-op when it is not running."""
        if not self.is_running():
            return
        self._pg_ctl("stop", "-w", "-m", mode, timeout_s=120)
        log.info("PostgreSQL on port %d stopped (%s)", self.port, mode)

    def dsn(self, user: str, password: str, dbname: str = "postgres") -> str:
        """A libpq key=value connection string over TCP to 127.0.0.1."""
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": user, "password": password, "dbname": dbname}
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in parts.items())
