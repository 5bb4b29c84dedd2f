"""The recovery point: how much committed work a disaster now would lose, and whether the
archiver is healthy.

RPO (store) = now - archived_at of the newest WAL set in the store; RPO (spool) = now - the
archive time of the newest WAL archived at all (the newest spool file, or the newest stored set
when shipping has emptied the spool). ``measure_rpo`` and ``judge_archiver`` are pure
decisions; ``hms_dr.wal.newest.newest_stored_wal`` (the one "newest WAL" the status page and the
freshness check use too) and ``read_archiver_status`` fetch their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hms_dr import sqlfiles
from hms_dr.database import connect
from hms_dr.pgtools import ConnectionInfo
from hms_dr.records import Record
from hms_dr.wal.newest import StoredWal


@dataclass(frozen=True)
class RpoReport(Record):
    """The recovery point now; ages (seconds, to 0.1 s) are None when there is nothing to measure.
    Its to_xcom() is measure_rpo's XCom and the hms://backups/wal Asset event's extra."""

    measured_at: datetime
    target_minutes: int
    store_age_s: float | None
    spool_age_s: float | None
    newest_stored_wal: str | None
    newest_archived_wal: str | None
    problem: str | None  # one line when over target; None when within it


def measure_rpo(
    newest_stored: StoredWal | None,
    newest_spool: tuple[str, datetime] | None,
    *,
    target_minutes: int,
    now: datetime,
) -> RpoReport:
    """The RPO of the store and the spool at ``now``, and a one-line problem when over target."""
    target = timedelta(minutes=target_minutes)
    store_age = None if newest_stored is None else now - newest_stored.archived_at
    # The spool's recovery point is the newest WAL archived at all: once shipped, a file leaves the
    # spool but its archive time travels in its set, so an emptied spool is not "no recovery point".
    archived = [newest_spool] if newest_spool is not None else []
    if newest_stored is not None:
        archived.append((newest_stored.name, newest_stored.archived_at))
    newest_archived = max(archived, key=lambda named: named[1]) if archived else None
    spool_age = None if newest_archived is None else now - newest_archived[1]
    problem = None
    if newest_stored is None:
        problem = "RPO unknown: no WAL set in the store yet"
    elif store_age is not None and store_age > target:
        problem = (
            f"RPO {_minutes(store_age)} is over the {target_minutes}-minute target: the newest WAL in the store, "
            f"{newest_stored.name}, was archived at {newest_stored.archived_at.isoformat()}"
        )
    return RpoReport(
        measured_at=now,
        target_minutes=target_minutes,
        store_age_s=None if store_age is None else round(store_age.total_seconds(), 1),
        spool_age_s=None if spool_age is None else round(spool_age.total_seconds(), 1),
        newest_stored_wal=None if newest_stored is None else newest_stored.name,
        newest_archived_wal=None if newest_archived is None else newest_archived[0],
        problem=problem,
    )


@dataclass(frozen=True)
class ArchiverStatus(Record):
    """One row of pg_stat_archiver (check_archiver's XCom is its to_xcom())."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_at: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_at: datetime | None


def judge_archiver(status: ArchiverStatus) -> str | None:
    """One line when archiving is failing now (the last failure is newer than the last success), else None."""
    if status.last_failed_at is None:
        return None
    if status.last_archived_at is not None and status.last_archived_at >= status.last_failed_at:
        return None
    return (
        f"WAL archiving is failing: {status.last_failed_wal} failed at {status.last_failed_at.isoformat()} "
        f"({status.failed_count} failures since the statistics reset), last success "
        f"{status.last_archived_wal or 'never'} at {status.last_archived_at.isoformat() if status.last_archived_at else 'never'}"
    )


def read_archiver_status(conn: ConnectionInfo) -> ArchiverStatus:
    with connect(conn) as connection:
        row = connection.execute(sqlfiles.text("wal/archiver_status")).fetchone()
    return ArchiverStatus(
        archived_count=int(row[0]),
        last_archived_wal=row[1],
        last_archived_at=row[2],
        failed_count=int(row[3]),
        last_failed_wal=row[4],
        last_failed_at=row[5],
    )


def _minutes(age: timedelta) -> str:
    return f"{age.total_seconds() / 60:.1f} min"
