"""The recovering server: the new cluster's postmaster, started with pg_ctl in a scrubbed
environment, its restore_command (walfetch, run as the server's OS user), and the watch that
waits until it has promoted, or reports the server log's FATAL line when it has not.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hms_dr import sqlfiles
from hms_dr.errors import DatabaseUnavailable, PreflightFailed, RecoveryFailed
from hms_dr.files import write_file_atomically
from hms_dr.pginstalls import data_dir_major, data_install
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical import walfetch
from hms_dr.physical.datadir import RECOVERY_SETTINGS_RESET_AFTER_PROMOTION, conf_value, remove_recovery_trust
from hms_dr.physical.targets import format_time
from hms_dr.physical.walpath import history_reason
from hms_dr.physical.walsource import WalSource
from hms_dr.server_user import server_command
from hms_dr.units import human_bytes
from hms_dr.wal.names import format_lsn, history_name

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0
POLL_S = 0.5
START_GRACE_S = 30.0  # for postmaster.pid to appear
ABORT_GRACE_S = 30.0  # for the server to die after the WAL source failed a file
SYSTEM_PYTHON = "/usr/bin/python3"
# A paused server's restore_command once the WAL source is gone: exit 1, "not in the archive".
PAUSED_RESTORE_COMMAND = "/bin/false"
_LOG_PREFIX = re.compile(r"^.*?\b(FATAL|PANIC):\s+")
# FATALs of client connections (ours, polling while the server starts), not the recovery's reason.
_CONNECTION_FATAL = re.compile(
    r"the database system is (starting up|not yet accepting connections|not accepting connections|shutting down|in recovery mode)"
    r'|terminating connection|too many clients|authentication failed|no pg_hba\.conf entry|(role|database) ".*" does not exist'
)


def _conf_quote(value: str) -> str:
    return shlex.quote(value).replace("%", "%%")


def walfetch_restore_command(directory: Path) -> str:
    """The restore_command, with a Python the server's OS user can run (proven with a ping).

    The server runs a copy of walfetch.py in ``directory`` (the WAL source's private directory,
    which the server's OS user owns): it then needs no access to where hms-dr is installed, which
    run as root may be a directory the postgres OS user cannot traverse.
    """
    script = directory / Path(walfetch.__file__).name
    write_file_atomically(script, Path(walfetch.__file__).read_text(encoding="utf-8"), mode=0o644)
    candidates = list(dict.fromkeys([sys.executable, SYSTEM_PYTHON]))
    failures = []
    for python in candidates:
        argv = [python, "-I", str(script), str(directory), "--ping"]
        try:
            done = subprocess.run(
                server_command(argv), capture_output=True, text=True, cwd="/", env=server_environment(), timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{python}: {exc}")
            continue
        if done.returncode == 0:
            return f"{_conf_quote(python)} -I {_conf_quote(str(script))} {_conf_quote(str(directory))} %f %p"
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        failures.append(f"{python}: {lines[-1] if lines else f'exit {done.returncode}'}")
    raise PreflightFailed(
        f"the PostgreSQL server's OS user cannot run walfetch ({script}): {'; '.join(failures)}",
        hint="the server user needs read access to the plugins directory and a Python 3 it may execute",
    )


def server_environment() -> dict[str, str]:
    """The recovering server's whole environment: no secret of this process is handed down."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for name in ("LANG", "LC_ALL", "LC_CTYPE", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class RecoveringServer:
    """The recovered cluster's postmaster, started with pg_ctl and watched until it promotes."""

    def __init__(self, data_dir: Path, port: int, socket_dir: Path, log_file: Path, superuser: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.socket_dir = socket_dir
        self.log_file = log_file
        self.conn = ConnectionInfo(str(socket_dir), port, superuser, "postgres")

    def _pg_ctl(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        # The data directory's own major: a recovered 15 cluster is run by 15's pg_ctl and postgres.
        pg = data_install(data_dir_major(self.data_dir), data=f"the recovered data directory {self.data_dir}")
        argv = [pg.program("pg_ctl"), "-D", str(self.data_dir), *args]
        return subprocess.run(
            server_command(argv), capture_output=True, text=True, cwd="/", env=server_environment(), timeout=timeout_s
        )

    def start(self) -> None:
        done = self._pg_ctl("start", "-W", "-l", str(self.log_file))
        if done.returncode != 0:
            raise RecoveryFailed(
                f"pg_ctl could not start the recovered server in {self.data_dir}: {_last_line(done.stderr)}"
            )
        log.info("recovering server starting on 127.0.0.1:%d (log %s)", self.port, self.log_file)

    def stop(self, mode: str = "fast") -> None:
        if self.postmaster_pid() is not None:
            self._pg_ctl("stop", "-w", "-m", mode)
            log.info("stopped the recovering server in %s (%s)", self.data_dir, mode)

    def postmaster_pid(self) -> int | None:
        return self._pid_file()[0]

    def _pid_file(self) -> tuple[int | None, str]:
        """The live postmaster's pid and its status line ("starting", "standby", "ready", "stopping")."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid = int(lines[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None, ""
        return pid, lines[7].strip() if len(lines) > 7 else ""

    def fatal_line(self) -> str:
        """The server log's first FATAL or PANIC message (the startup process's reason)."""
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f"no server log at {self.log_file}"
        fatal = []
        for line in lines:
            match = _LOG_PREFIX.match(line)
            if match:
                fatal.append(f"{match.group(1)}: {line[match.end() :].strip()}")
        telling = [line for line in fatal if not _CONNECTION_FATAL.search(line)]
        if telling or fatal:
            return (telling or fatal)[0]
        return _last_line("\n".join(lines)) or "the server exited without a message"

    def _failure(self, what: str, source: WalSource) -> RecoveryFailed:
        fetch = f"; the WAL source failed {source.stats.failures[0]}" if source.stats.failures else ""
        return RecoveryFailed(
            f"{what}: {self.fatal_line()}{fetch}",
            hint=f"the server log is {self.log_file}; the data directory was left for inspection",
        )

    def wait_until_promoted(
        self, source: WalSource, *, timeout_s: float, pause_at_target: bool = False
    ) -> dict[str, Any]:
        """Poll until pg_is_in_recovery() is false (or, with ``pause_at_target``, until replay has
        paused at the target); RecoveryFailed if the server dies first."""
        started = time.monotonic()
        last_report = started
        failed_at: float | None = None
        progress: tuple[Any, ...] = (None, None)
        while True:
            now = time.monotonic()
            pid, status = self._pid_file()
            if pid is None and (now - started > START_GRACE_S or (self.data_dir / "postmaster.opts").exists()):
                raise self._failure(f"recovery of {self.data_dir} failed, the server stopped", source)
            if source.stats.failures:
                failed_at = failed_at or now
                if now - failed_at > ABORT_GRACE_S:
                    raise self._failure(
                        f"recovery of {self.data_dir} failed and the server did not stop by itself", source
                    )
            if now - started > timeout_s:
                raise RecoveryFailed(
                    f"recovery of {self.data_dir} did not finish within {timeout_s:.0f} s (replayed to {progress[0] or 'nothing yet'})"
                )
            # Connect only once the server accepts connections: every refused attempt is a FATAL
            # line in the server log, which must stay readable for the one that matters.
            try:
                if status not in ("standby", "ready"):
                    raise DatabaseUnavailable("not accepting connections yet")
                with _connect(self.conn) as connection:
                    row = connection.execute(sqlfiles.text("physical/recovery_progress")).fetchone()
                    in_recovery, replayed, last_xact = row[0], row[1], row[2]
                    progress = (replayed, last_xact)
                    if in_recovery and pause_at_target and row[3] == "paused":
                        if source.stats.failures:
                            raise self._failure(
                                f"the server in {self.data_dir} paused although the WAL source failed", source
                            )
                        return self._finish_paused(connection)
                    if not in_recovery:
                        if source.stats.failures:
                            raise self._failure(
                                f"the server in {self.data_dir} promoted although the WAL source failed", source
                            )
                        return self._finish(connection)
            except DatabaseUnavailable:
                pass  # starting up, not yet consistent: hot standby connections come later
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                stats = source.stats
                log.info(
                    "recovering: replayed to %s, last transaction %s, %d WAL file(s) fetched (%s), %.0f s",
                    progress[0] or "-",
                    progress[1] or "-",
                    len(stats.served),
                    human_bytes(stats.plain_bytes),
                    now - started,
                )
            time.sleep(POLL_S)

    def _finish(self, connection: Any) -> dict[str, Any]:
        """Read the outcome, then drop the recovery-only settings and the trusted socket line."""
        row = connection.execute(sqlfiles.text("physical/recovery_outcome")).fetchone()
        current_wal_file, last_xact = str(row[0]), row[1]
        timeline = int(current_wal_file[:8], 16)
        history = self.data_dir / "pg_wal" / history_name(timeline)
        reason = history_reason(history.read_text(encoding="utf-8")) if history.exists() else None
        for name in RECOVERY_SETTINGS_RESET_AFTER_PROMOTION:
            connection.execute(f"ALTER SYSTEM RESET {name}")
        remove_recovery_trust(self.data_dir)
        connection.execute("SELECT pg_reload_conf()")
        return {
            "timeline": timeline,
            "recovered_through_timeline": None if reason is None else reason[0],
            "recovery_end_lsn": None if reason is None else format_lsn(reason[1]),
            "recovery_end_reason": None if reason is None else reason[2],
            "recovery_end_time": None if last_xact is None else format_time(last_xact),
            "promoted_at": format_time(datetime.now(UTC)),
        }

    def _finish_paused(self, connection: Any) -> dict[str, Any]:
        """Read where replay paused, then make the paused server independent of this process: its
        restore_command (walfetch, served by the WAL source that goes when recover returns) becomes
        one that finds nothing, so a later pg_promote() ends recovery instead of aborting it."""
        row = connection.execute(sqlfiles.text("physical/recovery_paused")).fetchone()
        replayed, timeline, last_xact = row[0], int(row[1]), row[2]
        connection.execute(f"ALTER SYSTEM SET restore_command = {conf_value(PAUSED_RESTORE_COMMAND)}")
        remove_recovery_trust(self.data_dir)
        connection.execute("SELECT pg_reload_conf()")
        return {
            "timeline": timeline,
            "recovered_through_timeline": None,
            "recovery_end_lsn": replayed,
            "recovery_end_reason": "paused at the recovery target (recovery_target_action = pause)",
            "recovery_end_time": None if last_xact is None else format_time(last_xact),
            "promoted_at": None,
            "paused_at": format_time(datetime.now(UTC)),
        }


def _connect(conn: ConnectionInfo) -> Any:
    from hms_dr.database import connect

    return connect(conn)


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
