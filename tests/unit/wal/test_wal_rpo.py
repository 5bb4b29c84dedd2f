"""RPO is now minus the newest WAL safely stored; archiving is failing when its last failure is newest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hms_dr.wal.newest import StoredWal
from hms_dr.wal.rpo import ArchiverStatus, judge_archiver, measure_rpo

NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
SEGMENT = "000000010000000000000009"


@pytest.mark.parametrize(
    ("stored_age", "spool_age", "problem"),
    [
        (timedelta(minutes=4), timedelta(seconds=30), None),
        (timedelta(minutes=15), None, None),  # an emptied spool: its newest WAL is the newest stored
        (timedelta(minutes=16), timedelta(seconds=10), "RPO 16.0 min is over the 15-minute target"),
        (None, timedelta(minutes=1), "RPO unknown: no WAL set in the store yet"),
    ],
)
def test_rpo_is_measured_against_the_newest_stored_wal(stored_age, spool_age, problem) -> None:  # type: ignore[no-untyped-def]
    stored = None if stored_age is None else StoredWal(SEGMENT, NOW - stored_age)
    spool = None if spool_age is None else ("00000001000000000000000A", NOW - spool_age)
    report = measure_rpo(stored, spool, target_minutes=15, now=NOW)
    assert report.store_age_s == (None if stored_age is None else stored_age.total_seconds())
    newest_archived = min(age for age in (stored_age, spool_age) if age is not None)
    assert report.spool_age_s == newest_archived.total_seconds()
    if problem is None:
        assert report.problem is None
    else:
        assert report.problem is not None and report.problem.startswith(problem) and "\n" not in report.problem
    assert report.to_xcom()["target_minutes"] == 15


def status(archived_at: datetime | None, failed_at: datetime | None) -> ArchiverStatus:
    return ArchiverStatus(
        archived_count=10,
        last_archived_wal=SEGMENT,
        last_archived_at=archived_at,
        failed_count=0 if failed_at is None else 3,
        last_failed_wal=None if failed_at is None else "00000001000000000000000A",
        last_failed_at=failed_at,
    )


@pytest.mark.parametrize(
    ("archived_at", "failed_at", "failing"),
    [
        (NOW, None, False),
        (NOW, NOW - timedelta(minutes=5), False),  # failed once, archived since
        (NOW - timedelta(minutes=5), NOW, True),
        (None, NOW, True),
        (None, None, False),
    ],
)
def test_archiving_is_failing_only_while_the_last_failure_is_newer_than_the_last_success(
    archived_at, failed_at, failing
) -> None:  # type: ignore[no-untyped-def]
    verdict = judge_archiver(status(archived_at, failed_at))
    assert (verdict is not None) == failing
    if verdict:
        assert "00000001000000000000000A" in verdict and "\n" not in verdict
