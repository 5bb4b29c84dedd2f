"""A kind is stale when its newest complete set is older than the policy allows, unknown when it has none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hms_dr.freshness import NewestSet, check_offsite_copies, judge_freshness, read_newest_sets
from hms_dr.manifest import BackupKind, Payload
from hms_dr.offsite.freshness import FreshnessVerdict, KindNewest, NewestOffsite, NewestPrimary, judge_offsite_freshness
from hms_dr.policy import FreshnessKind as K
from hms_dr.policy import OffsitePolicy

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# The offsite copies have no max_age here: they are judged by the offsite judge (offsite.max_age_days).
MAX_AGE = {
    K.LOGICAL: timedelta(hours=26),
    K.BASE: timedelta(days=8),
    K.WAL: timedelta(minutes=15),
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
        (
            K.LOGICAL,
            timedelta(hours=27, minutes=3),
            "logical (hms_daily_logical_backup): newest complete set 20261124T020001Z finished 27 h 3 min ago, older than the 26h allowed",
        ),
        (
            K.WAL,
            timedelta(minutes=16),
            "wal (hms_wal_archive): newest complete set 20261124T020001Z finished 16 min ago, older than the 15m allowed",
        ),
        (
            K.BASE,
            timedelta(days=9, hours=1),
            "base (hms_weekly_base_backup): newest complete set 20261124T020001Z finished 9 d 1 h ago, older than the 8d allowed",
        ),
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
    report = judge_freshness(
        {K.LOGICAL: newest(K.LOGICAL, timedelta(hours=1))}, {K.LOGICAL: MAX_AGE[K.LOGICAL], K.WAL: MAX_AGE[K.WAL]}, NOW
    )
    assert report.problems == ("wal (hms_wal_archive): unknown: no complete set (allowed age 15m)",)
    assert [line.split(":")[0] for line in report.lines] == [
        "logical (hms_daily_logical_backup)",
        "wal (hms_wal_archive)",
    ]


def test_the_offsite_kind_reports_the_offsite_judges_verdict_line_by_line() -> None:
    verdict = judge_offsite_freshness(
        {
            "logical": KindNewest(2, NewestPrimary("20261124T020001Z", NOW - timedelta(hours=10)), None),
            "base": KindNewest(
                1, NewestPrimary("b", NOW - timedelta(days=2)), NewestOffsite("b", NOW - timedelta(days=2))
            ),
        },
        lambda kind: 8,
        NOW,
    )
    report = judge_freshness(
        {K.LOGICAL: newest(K.LOGICAL, timedelta(hours=1))}, {K.LOGICAL: MAX_AGE[K.LOGICAL]}, NOW, offsite=verdict
    )
    assert report.problems == (
        "offsite (hms_offsite_sync): logical: no copy offsite although the primary holds 2 set(s)",
    )
    assert [line.split(": ")[:2] for line in report.lines] == [
        ["logical (hms_daily_logical_backup)", "newest complete set 20261124T020001Z finished 60 min ago, within 26h"],
        ["offsite (hms_offsite_sync)", "logical"],
        ["offsite (hms_offsite_sync)", "base"],
    ]
    # Not watched (alerts.freshness.watch_offsite: false): no offsite line at all.
    assert not any(line.startswith("offsite") for line in judge_freshness({}, MAX_AGE, NOW).lines)


def test_every_problem_is_one_line() -> None:
    offsite = FreshnessVerdict(
        lines=("logical: newest offsite copy o is 40 days old (limit 8 days)",),
        problems=("logical: newest offsite copy o is 40 days old (limit 8 days)",),
    )
    report = judge_freshness({k: newest(k, timedelta(days=40)) for k in K}, MAX_AGE, NOW, offsite=offsite)
    assert len(report.problems) == len(K)
    assert all("\n" not in p for p in report.problems)
    assert report.to_xcom()["problems"] == list(report.problems)


def _publish(store, kind: BackupKind, set_id: str, finished_at: datetime, **extra: object) -> None:  # type: ignore[no-untyped-def]
    import io

    from hms_dr.catalog import key_for
    from hms_dr.publish import publish_set

    stored = store.put(key_for("hms-primary", kind, set_id, "payload"), io.BytesIO(b"x"))
    publish_set(
        store,
        kind=kind,
        cluster="hms-primary",
        backup_set_id=set_id,
        started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at,
        payloads=[Payload("payload", stored.size_bytes, stored.sha256, "test")],
        extra=extra,
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
    found = read_newest_sets(primary, "hms-primary", MAX_AGE)
    assert found[K.LOGICAL].backup_set_id == "20261123T020001Z"
    assert found[K.RESTORE_TEST].backup_set_id == "20261101T040001Z"  # the newer one failed: it proves nothing
    assert found[K.BASE].finished_at is None and found[K.WAL].finished_at is None
    offsite_verdict = check_offsite_copies(primary, offsite, "hms-primary", OffsitePolicy(), NOW)
    assert offsite_verdict.problems == (
        "logical: no copy offsite although the primary holds 2 set(s)",
    )  # nothing offsite yet: not fresh
    report = judge_freshness(found, MAX_AGE, NOW, offsite=offsite_verdict)
    assert [p.split(" ")[0] for p in report.problems] == ["base", "wal", "offsite"]


def test_the_freshness_check_and_the_offsite_sync_judge_the_offsite_copies_alike(tmp_path: Path) -> None:
    """One limit (offsite.max_age_days), one judge: a stale offsite copy fails both DAGs with the same line."""
    from hms_dr.offsite.sync import sync_offsite
    from hms_dr.store import open_store

    (tmp_path / "primary").mkdir()
    (tmp_path / "offsite").mkdir()
    primary = open_store(f"file://{tmp_path / 'primary'}")
    offsite = open_store(f"file://{tmp_path / 'offsite'}")
    _publish(primary, BackupKind.LOGICAL, "20261113T020001Z", NOW - timedelta(days=11))
    _publish(primary, BackupKind.BASE, "20261115T030001Z", NOW - timedelta(days=9))
    settings = OffsitePolicy(max_age_days=10, max_age_days_by_kind={"base": 30})
    pass_report = sync_offsite(
        primary,
        offsite,
        "hms-primary",
        window=timedelta(days=90),
        now=NOW,
        reverify_weeks=52,
        kinds=(BackupKind.LOGICAL, BackupKind.BASE),
    )
    from_sync = judge_offsite_freshness(pass_report.kinds, settings.max_age_days_for, NOW)
    from_freshness = check_offsite_copies(primary, offsite, "hms-primary", settings, NOW)
    assert from_sync == from_freshness
    assert len(from_sync.problems) == 1 and from_sync.problems[0].startswith(
        "logical: newest offsite copy 20261113T020001Z is 11 days old (limit 10 days)"
    )
