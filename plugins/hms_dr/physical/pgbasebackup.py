"""pg_basebackup, the copy step of a base backup: what runs, how it runs, how its failures read.

``pg_basebackup_argv`` is pure; ``run_pg_basebackup`` runs it as the replication role (password in
the child's environment, never argv) into a private directory and logs its progress by the bytes
written there; ``explain_pg_basebackup_failure`` turns its last error line into one line with a hint.

An incremental (``--incremental=<parent's backup_manifest>``, PostgreSQL 17+) can be refused by the
server for reasons only a full backup cures: WAL summaries missing from the parent's start on
(summarize_wal was off then, or wal_summary_keep_time removed them), or a parent of another
cluster or timeline history. ``needs_full_backup`` recognises them; the auto mode then takes a
full backup in the same run (a missed backup is worse than a larger one).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from hms_dr.errors import ToolFailed
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo, tool_env
from hms_dr.progress import ProgressLog
from hms_dr.streams import telling_line, widen_pipe
from hms_dr.units import human_bytes, human_rate

log = logging.getLogger(__name__)

# A stream that broke while pg_basebackup runs: how long it may take to exit with its own reason.
STREAM_BREAK_GRACE_S = 3.0


# The server's refusals of an incremental that no retry cures: only a new full backup does.
_NEEDS_FULL = (
    "wal summar",  # "WAL summaries are required on timeline 1 from 0/2000028 to ...", "...unless WAL summarization is enabled"
    "manifest requires wal",  # the parent's WAL range is not in this server's timeline history
    "manifest system identifier",  # the parent is of another cluster
    "not in this server's history",
    "does not support incremental",
)


def pg_basebackup_argv(
    pg: PgInstall,
    target_dir: Path | None,
    *,
    label: str,
    max_rate_kib_s: int | None = None,
    incremental_manifest: Path | None = None,
) -> list[str]:
    """pg_basebackup in tar format with a SHA-256 manifest; the connection (password included)
    comes from the environment, never from argv. Into ``target_dir`` with the WAL streamed beside
    (pg_wal.tar); with ``target_dir`` None, one tar to stdout, the WAL fetched into it at the end
    and the manifest injected as its last member (the streamed method: pg_basebackup cannot
    stream WAL to stdout). With ``incremental_manifest`` (the parent's plain backup_manifest), an
    incremental backup: the server sends only the blocks changed since the parent's start (17+)."""
    argv = [
        pg.program("pg_basebackup"),
        f"--pgdata={target_dir if target_dir is not None else '-'}",
        "--format=tar",
        f"--wal-method={'stream' if target_dir is not None else 'fetch'}",
        "--checkpoint=fast",
        "--manifest-checksums=SHA256",
        f"--label={label}",
        "--no-password",
        "--verbose",
    ]
    if max_rate_kib_s:
        argv.append(f"--max-rate={max_rate_kib_s}k")  # protects the primary's I/O; 32 to 1048576 kB/s
    if incremental_manifest is not None:
        argv.append(f"--incremental={incremental_manifest}")
    return argv


def needs_full_backup(failure: ToolFailed) -> bool:
    """Whether pg_basebackup failed because the server cannot take this incremental at all."""
    line = failure.last_stderr_line.lower()
    return any(words in line for words in _NEEDS_FULL)


def explain_pg_basebackup_failure(failure: ToolFailed, where: str) -> ToolFailed:
    """The same one-line failure, with a hint for the causes an operator can fix."""
    killed = failure.exit_code is not None and failure.exit_code < 0
    if killed and "error" not in failure.last_stderr_line.lower():
        # Its last words were progress (--verbose), not the reason: the reason is the signal.
        failure = ToolFailed(failure.tool, failure.exit_code, _signal_name(-(failure.exit_code or 0)))
    line = failure.last_stderr_line.lower()
    if needs_full_backup(failure):
        hint = (
            "this incremental cannot be taken: a full base backup is needed (the auto mode takes one; "
            "or run with backup_type full). If summarize_wal was just turned on, incrementals work from that full on"
        )
    elif (connection_hint := replication_connection_hint(line, where)) is not None:
        hint = connection_hint
    elif killed or failure.exit_code is None or "server closed the connection" in line or "terminat" in line:
        hint = "the copy was interrupted; nothing was stored, the next run starts over"
    else:
        hint = "nothing was stored; the full pg_basebackup output is in the task log"
    return ToolFailed("pg_basebackup", failure.exit_code, failure.last_stderr_line, hint=hint)


def replication_connection_hint(error_line: str, where: str) -> str | None:
    """What an operator does about a refused replication connection (pg_basebackup's, or the one
    holding a streamed backup's WAL), or None when the line is about something else."""
    line = error_line.lower()
    if "password authentication failed" in line or "no password supplied" in line:
        return "check the password of the replication role in the Airflow connection"
    if "pg_hba.conf" in line:
        return f"allow replication connections for the role in pg_hba.conf on {where} and reload"
    if "max_wal_senders" in line or "too many clients" in line or "remaining connection slots" in line:
        return "raise max_wal_senders on the server or wait for other backups and replicas to finish"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def directory_bytes(directory: Path) -> int:
    """Bytes in the files directly under ``directory`` (pg_basebackup's output is flat)."""
    total = 0
    for path in directory.iterdir() if directory.exists() else ():
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # backup_manifest.tmp renamed under us
            continue
    return total


def run_pg_basebackup(
    conn: ConnectionInfo,
    pg: PgInstall,
    target_dir: Path,
    *,
    label: str,
    expected_bytes: int | None = None,
    max_rate_kib_s: int | None = None,
    incremental_manifest: Path | None = None,
) -> float:
    """pg_basebackup into ``target_dir`` (which must not exist yet); the seconds it took.

    ToolFailed carries pg_basebackup's error line; its whole stderr goes to the log."""
    started = time.monotonic()
    argv = pg_basebackup_argv(
        pg, target_dir, label=label, max_rate_kib_s=max_rate_kib_s, incremental_manifest=incremental_manifest
    )
    where = f"{conn.host}:{conn.port}"
    kind = f"incremental against {incremental_manifest.name}" if incremental_manifest else "full"
    log.info("pg_basebackup (%s) from %s as %s into %s (label %s)", kind, where, conn.user, target_dir, label)
    # Not a streams.Pipeline: pg_basebackup -X stream forks a WAL receiver that inherits its
    # output pipes, so a killed pg_basebackup would leave them open (no EOF) until the server
    # times the stream out. Its own session lets the whole group go together; stderr goes to an
    # anonymous private file, read once the parent has exited.
    with tempfile.TemporaryFile(dir=target_dir.parent) as stderr_file:
        with ProgressLog("pg_basebackup", lambda: directory_bytes(target_dir), expected_bytes=expected_bytes):
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                env=tool_env(conn),
                start_new_session=True,
            )
            try:
                exit_code = process.wait()
            finally:
                _kill_process_group(process)
        stderr_file.seek(0)
        text = stderr_file.read().decode("utf-8", "replace")
        lines = [line.strip().removeprefix("pg_basebackup: ") for line in text.splitlines() if line.strip()]
    if exit_code != 0:
        for line in lines:
            log.error("pg_basebackup: %s", line)
        raise explain_pg_basebackup_failure(ToolFailed("pg_basebackup", exit_code, telling_line(lines)), where)
    for line in lines:
        log.info("pg_basebackup: %s", line)
    seconds = time.monotonic() - started
    size = directory_bytes(target_dir)
    log.info("pg_basebackup finished: %s in %.1f s, %s", human_bytes(size), seconds, human_rate(size, seconds))
    return seconds


class StreamingPgBasebackup:
    """pg_basebackup writing its tar to a pipe (``stdout``), in a session of its own.

    The reader calls ``ended(whole)`` when the stream stops: a whole stream waits for the exit, a
    broken one gives pg_basebackup a moment to exit by itself (its own error then explains the
    break) and ends it otherwise. A non-zero exit raises the explained ToolFailed either way.
    """

    def __init__(
        self,
        conn: ConnectionInfo,
        pg: PgInstall,
        scratch_dir: Path,
        *,
        label: str,
        max_rate_kib_s: int | None = None,
        incremental_manifest: Path | None = None,
    ) -> None:
        self._conn = conn
        self._argv = pg_basebackup_argv(
            pg, None, label=label, max_rate_kib_s=max_rate_kib_s, incremental_manifest=incremental_manifest
        )
        self._scratch_dir = scratch_dir
        self._where = f"{conn.host}:{conn.port}"
        kind = f"incremental against {incremental_manifest.name}" if incremental_manifest else "full"
        self.description = f"pg_basebackup ({kind}, streamed) from {self._where} as {conn.user} (label {label})"
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> StreamingPgBasebackup:
        log.info("%s", self.description)
        self._stderr = tempfile.TemporaryFile(dir=self._scratch_dir)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=tool_env(self._conn),
            start_new_session=True,
        )
        assert self.process.stdout is not None
        widen_pipe(self.process.stdout.fileno())
        self.stdout = self.process.stdout
        return self

    def ended(self, whole: bool) -> None:
        if not whole:
            try:
                self.process.wait(timeout=STREAM_BREAK_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_process_group(self.process)
                return  # ended by us: the stream's own error is the reason
        exit_code = self.process.wait()
        self.seconds = time.monotonic() - self.started
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        lines = [line.strip().removeprefix("pg_basebackup: ") for line in text.splitlines() if line.strip()]
        if exit_code != 0:
            for line in lines:
                log.error("pg_basebackup: %s", line)
            raise explain_pg_basebackup_failure(
                ToolFailed("pg_basebackup", exit_code, telling_line(lines)), self._where
            )
        for line in lines:
            log.info("pg_basebackup: %s", line)

    def __exit__(self, *exc_info: object) -> None:
        _kill_process_group(self.process)
        self.stdout.close()
        self._stderr.close()


def _kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """End whatever is left of pg_basebackup's session (its WAL receiver after a kill, or all of
    it when this task is interrupted); nothing is left after a normal exit."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()
