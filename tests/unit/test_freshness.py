"""A kind is stale when its newest complete set is older than the policy allows, unknown when it has none."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hms_dr.freshness import NewestSet, judge_freshness, read_newest_sets
from hms_dr.manifest import BackupKind, Payload
from hms_dr.policy import FreshnessKind as K

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
MAX_AGE = {
    K.LOGICAL: timedelta(hours=26),
    K.BASE: timedelta(days=8),
    K.WAL: timedelta(minutes=15),
    K.OFFSITE: timedelta(days=8),
    K.RESTORE_TEST: timedelta(days=32),
}


def newest(kind: K, age: timedelta | None, set_id: str = "20261124T020001Z") -> NewestSet:
    if age is None:
        return NewestSet(kind, f"s3://hms-backups/hms-primary/{kind.value}/")
    return NewestSet(kind, f"s3://hms-backups/hms-primary/{kind.value}/", set_id, NOW - age)


@pytest.mark.parametrize(
    ("kind", "age", "problem"),
    [
        (K.LOGICAL, timedelta(hours=10), None),
        (K.LOGICAL, timedelta(hours=26), None),  # exactly the limit is still fresh
        (K.LOGICAL, timedelta(hours=27, minutes=3), "logical (hms_daily_logical_backup): newest complete set 20261124T020001Z finished 27 h 3 min ago, older than the 26h allowed"),
        (K.WAL, timedelta(minutes=16), "wal (hms_wal_archive): newest complete set 20261124T020001Z finished 16 min ago, older than the 15m allowed"),
        (K.BASE, timedelta(days=9, hours=1), "base (hms_weekly_base_backup): newest complete set 20261124T020001Z finished 9 d 1 h ago, older than the 8d allowed"),
        (K.OFFSITE, None, "offsite (hms_offsite_sync): unknown: no complete set in s3://hms-backups/hms-primary/offsite/ (allowed age 8d)"),
        (K.RESTORE_TEST, timedelta(days=31), None),
        (K.LOGICAL, -timedelta(minutes=5), None),  # finished "in the future": clock skew, not staleness
    ],
)
def test_each_kind_is_judged_against_its_own_max_age(kind: K, age: timedelta | None, problem: str | None) -> None:
    report = judge_freshness({kind: newest(kind, age)}, {kind: MAX_AGE[kind]}, NOW)
    assert len(report.lines) == 1
    if problem is None:
        assert report.problems == ()
        assert "within" in report.lines[0]
    else:
        assert report.problems == (problem,)


def test_a_watched_kind_nobody_listed_is_unknown_and_an_unwatched_one_is_ignored() -> None:
    report = judge_freshness({K.LOGICAL: newest(K.LOGICAL, timedelta(hours=1))}, {K.LOGICAL: MAX_AGE[K.LOGICAL], K.WAL: MAX_AGE[K.WAL]}, NOW)
    assert report.problems == ("wal (hms_wal_archive): unknown: no complete set (allowed age 15m)",)
    assert [line.split(":")[0] for line in report.lines] == ["logical (hms_daily_logical_backup)", "wal (hms_wal_archive)"]


def test_every_problem_is_one_line() -> None:
    report = judge_freshness({k: newest(k, timedelta(days=40)) for k in K}, MAX_AGE, NOW)
    assert len(report.problems) == len(K)
    assert all("\n" not in p for p in report.problems)
    assert report.to_dict()["problems"] == list(report.problems)


def _publish(store, kind: BackupKind, set_id: str, finished_at: datetime, **extra: object) -> None:  # type: ignore[no-untyped-def]
    import io

    from hms_dr.catalog import key_for
    from hms_dr.publish import publish_set

    stored = store.put(key_for("hms-primary", kind, set_id, "payload"), io.BytesIO(b"x"))
    publish_set(
        store, kind=kind, cluster="hms-primary", backup_set_id=set_id, started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at, payloads=[Payload("payload", stored.size_bytes, stored.sha256, "test")], extra=extra,
    )


def test_the_newest_complete_sets_are_read_from_a_store_and_only_passed_restore_tests_count(tmp_path: Path) -> None:
    from hms_dr.store import open_store

    (tmp_path / "primary").mkdir()
    (tmp_path / "offsite").mkdir()
    primary = open_store(f"file://{tmp_path / 'primary'}")
    offsite = open_store(f"file://{tmp_path / 'offsite'}")
    _publish(primary, BackupKind.LOGICAL, "20261122T020001Z", NOW - timedelta(days=2))
    _publish(primary, BackupKind.LOGICAL, "20261123T020001Z", NOW - timedelta(days=1))
    _publish(primary, BackupKind.RESTORE_TEST, "20261101T040001Z", NOW - timedelta(days=23), passed=True)
    _publish(primary, BackupKind.RESTORE_TEST, "20261120T040001Z", NOW - timedelta(days=4), passed=False)
    found = read_newest_sets(primary, "hms-primary", MAX_AGE, offsite=offsite)
    assert found[K.LOGICAL].backup_set_id == "20261123T020001Z"
    assert found[K.RESTORE_TEST].backup_set_id == "20261101T040001Z"  # the newer one failed: it proves nothing
    assert found[K.BASE].finished_at is None and found[K.WAL].finished_at is None
    assert found[K.OFFSITE].finished_at is None  # nothing offsite yet: unknown, not fresh
    report = judge_freshness(found, MAX_AGE, NOW)
    assert [p.split(" ")[0] for p in report.problems] == ["base", "wal", "offsite"]
