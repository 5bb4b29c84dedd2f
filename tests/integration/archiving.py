"""Waiting for a cluster's archiver: the one wait every test shares that needs "this WAL segment
is in the spool", and the archiver's own account of itself when the segment does not come.

PostgreSQL runs archive_command once per finished segment and, when it fails three times in a
row, gives up for up to a minute; a plain "is the file there yet" loop then times out without
saying why. This wait reads ``pg_stat_archiver`` as it goes: a failure on a segment it waits for
(not archived since) fails the test at once with the server's log lines about archiving; a timeout says what the
archiver last did, which files still wait (``archive_status/*.ready``) and what the spool holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ARCHIVE_WAIT_S = 120.0  # a segment normally lands in well under a second; this is a stuck archiver
LOG_LINES = 12
POLL_S = 0.2


@dataclass(frozen=True)
class Archiver:
    """A cluster's archiver: a superuser DSN to ask it, the spool its archive_command fills and the
    server log it reports failures in."""

    dsn: str
    spool: Path
    log_file: Path

    @classmethod
    def of_sandbox(cls, sandbox: Any) -> Archiver:
        return cls(sandbox.superuser_dsn(), Path(sandbox.paths.spool_dir), Path(sandbox.paths.pg_log_file))

    def switch(self, dsn: str | None = None) -> str:
        """Close the current segment (``dsn``: on another database of the cluster); its name."""
        with psycopg.connect(dsn or self.dsn, autocommit=True) as conn:
            return switch_wal(conn)

    def switch_and_wait(self) -> str:
        name = self.switch()
        self.wait_spooled([name])
        return name

    def wait_spooled(self, names: Iterable[str], timeout_s: float = ARCHIVE_WAIT_S) -> None:
        """Until every segment of ``names`` is in the spool; fails early when archiving them fails."""
        waiting = sorted(set(names))
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while missing := [n for n in waiting if not (self.spool / n).exists()]:
                failed_on = _archiver_row(conn)["last_failed_wal"]
                if failed_on in missing:  # archive_command's failures repeat: no point waiting them out
                    raise AssertionError(f"archive_command failed on {failed_on}: {self._account(conn)}")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{missing} not in {self.spool} within {timeout_s:.0f} s: {self._account(conn)}"
                    )
                time.sleep(POLL_S)

    def _account(self, conn: psycopg.Connection[Any]) -> str:
        row = _archiver_row(conn)
        ready = [r[0] for r in conn.execute("SELECT name FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")]
        spooled = sorted(p.name for p in self.spool.iterdir()) if self.spool.is_dir() else "no spool directory"
        return (
            f"pg_stat_archiver {row}; waiting to be archived {sorted(ready)}; spool {spooled}; log:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"(server log unreadable: {error})"
        about_archiving = [line for line in lines if "archiv" in line.lower()]
        return "\n".join(about_archiving[-LOG_LINES:]) or "(nothing about archiving)"


def switch_wal(conn: psycopg.Connection[Any]) -> str:
    """Close the current WAL segment; the name of the segment just completed."""
    row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    return str(row[0])


def _archiver_row(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    cursor = conn.execute(
        "SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal,"
        " last_failed_time, now() AS now FROM pg_stat_archiver"
    )
    row = cursor.fetchone()
    assert row is not None and cursor.description is not None
    return {column.name: value for column, value in zip(cursor.description, row, strict=True)}
