"""Base backups are kept by count ("keep 4"), not by age: the planner with no age window (these
sets are all full backups; chains of incrementals: test_base_backup_chains)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hms_dr.catalog import BackupSet, CatalogListing, OrphanFolder
from hms_dr.errors import RetentionRefused
from hms_dr.manifest import BackupKind, Manifest, new_backup_set_id
from hms_dr.retention import RetentionRule, plan_retention

NOW = datetime(2026, 11, 29, 3, 30, tzinfo=UTC)
KEEP_4 = RetentionRule.keep_newest(4, orphan_max_age=timedelta(hours=24))


def a_base_set(age: timedelta) -> BackupSet:
    finished = NOW - age
    set_id = new_backup_set_id(finished - timedelta(minutes=20))
    manifest = Manifest(BackupKind.BASE, set_id, "hms-primary", finished - timedelta(minutes=20), finished, (), {})
    return BackupSet(manifest=manifest, manifest_key=f"hms-primary/base/{set_id}/manifest.json")


def weekly(count: int) -> list[BackupSet]:
    return [a_base_set(timedelta(weeks=w, hours=1)) for w in range(count)]


@pytest.mark.parametrize(("count", "expired"), [(0, 0), (1, 0), (4, 0), (5, 1), (9, 5)])
def test_keeps_the_newest_four_and_expires_the_rest_whatever_their_age(count: int, expired: int) -> None:
    sets = weekly(count)
    plan = plan_retention(CatalogListing(tuple(reversed(sets)), (), ()), BackupKind.BASE, KEEP_4, NOW)
    assert sorted(plan.keep) == sorted(s.backup_set_id for s in sets[:4])
    # Newest first: an incremental is always deleted before its parent (test_base_backup_chains).
    assert [e.backup_set_id for e in plan.expire] == [s.backup_set_id for s in sets[4:]]
    assert len(plan.expire) == expired and all(e.complete and e.kind is BackupKind.BASE for e in plan.expire)


def test_an_expired_set_says_why_and_a_kept_one_too() -> None:
    sets = weekly(5)
    plan = plan_retention(CatalogListing(tuple(sets), (), ()), BackupKind.BASE, KEEP_4, NOW)
    # The count is of full backups: incrementals go with their full (test_base_backup_chains).
    assert plan.reasons[sets[4].backup_set_id] == "not among the newest 4 full base backup(s) (28 days old)"
    assert plan.reasons[sets[0].backup_set_id] == "among the newest 4 full base backup(s)"


def test_four_sets_taken_today_still_expire_an_older_fifth() -> None:
    sets = [a_base_set(timedelta(hours=h)) for h in (1, 2, 3, 4, 5)]
    plan = plan_retention(CatalogListing(tuple(sets), (), ()), BackupKind.BASE, KEEP_4, NOW)
    assert [e.backup_set_id for e in plan.expire] == [sets[4].backup_set_id]


def test_an_interrupted_run_goes_after_a_day() -> None:
    stale = OrphanFolder(BackupKind.BASE, new_backup_set_id(NOW - timedelta(days=2)), ("k",), NOW - timedelta(days=2))
    fresh = OrphanFolder(BackupKind.BASE, new_backup_set_id(NOW - timedelta(hours=2)), ("k",), NOW - timedelta(hours=2))
    plan = plan_retention(CatalogListing(tuple(weekly(2)), (stale, fresh), ()), BackupKind.BASE, KEEP_4, NOW)
    assert [(e.backup_set_id, e.complete) for e in plan.expire] == [(stale.backup_set_id, False)]


def test_keeping_none_is_refused() -> None:
    with pytest.raises(RetentionRefused):
        RetentionRule.keep_newest(0, orphan_max_age=timedelta(hours=24))


@settings(max_examples=200, deadline=None)
@given(
    ages_hours=st.lists(st.integers(min_value=0, max_value=24 * 400), max_size=30),
    keep=st.integers(min_value=1, max_value=8),
)
def test_exactly_the_newest_sets_survive_and_a_second_plan_expires_nothing(ages_hours: list[int], keep: int) -> None:
    rule = RetentionRule.keep_newest(keep, orphan_max_age=timedelta(hours=24))
    unique = {s.backup_set_id: s for s in (a_base_set(timedelta(hours=h)) for h in ages_hours)}
    plan = plan_retention(CatalogListing(tuple(unique.values()), (), ()), BackupKind.BASE, rule, NOW)
    newest_first = sorted(unique.values(), key=lambda s: (s.finished_at, s.backup_set_id), reverse=True)
    assert set(plan.keep) == {s.backup_set_id for s in newest_first[:keep]}
    remaining = [s for s in unique.values() if s.backup_set_id in plan.keep]
    assert plan_retention(CatalogListing(tuple(remaining), (), ()), BackupKind.BASE, rule, NOW).expire == ()
