"""The retention planner: decisions from plain records and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hms_dr.catalog import BackupSet, CatalogListing, OrphanFolder
from hms_dr.errors import RetentionRefused
from hms_dr.manifest import BackupKind, Manifest, new_backup_set_id
from hms_dr.retention import RetentionRule, plan_retention

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
RULE = RetentionRule(max_age=timedelta(days=30), orphan_max_age=timedelta(hours=24))


def a_set(age: timedelta) -> BackupSet:
    finished = NOW - age
    set_id = new_backup_set_id(finished - timedelta(minutes=5))
    manifest = Manifest(BackupKind.LOGICAL, set_id, "hms-primary", finished - timedelta(minutes=5), finished, (), {})
    return BackupSet(manifest=manifest, manifest_key=f"hms-primary/logical/{set_id}/manifest.json")


def an_orphan(age: timedelta) -> OrphanFolder:
    written = NOW - age
    return OrphanFolder(BackupKind.LOGICAL, new_backup_set_id(written), ("k",), written)


def listing(*sets: BackupSet, orphans: tuple[OrphanFolder, ...] = ()) -> CatalogListing:
    return CatalogListing(sets=tuple(sets), orphans=orphans, unreadable=())


@pytest.mark.parametrize(
    ("ages_days", "expired_ages"),
    [
        ([1, 2, 29, 31, 45], [31, 45]),
        ([31, 45, 90], [45, 90]),  # the newest survives even past the window
        ([30], []),  # exactly at the window is still inside it
        ([], []),
    ],
)
def test_expires_only_sets_older_than_the_window(ages_days: list[int], expired_ages: list[int]) -> None:
    sets = [a_set(timedelta(days=d)) for d in ages_days]
    plan = plan_retention(listing(*sets), BackupKind.LOGICAL, RULE, NOW)
    by_id = {s.backup_set_id: d for s, d in zip(sets, ages_days, strict=False)}
    assert sorted(by_id[e.backup_set_id] for e in plan.expire) == sorted(expired_ages)


def test_never_expires_the_newest_complete_set_even_when_all_are_old() -> None:
    sets = [a_set(timedelta(days=d)) for d in (100, 200, 300)]
    plan = plan_retention(listing(*sets), BackupKind.LOGICAL, RULE, NOW)
    assert sets[0].backup_set_id in plan.keep
    assert "newest" in plan.reasons[sets[0].backup_set_id]


def test_orphans_expire_after_a_day_but_not_before() -> None:
    fresh, stale = an_orphan(timedelta(hours=3)), an_orphan(timedelta(hours=30))
    plan = plan_retention(listing(a_set(timedelta(days=1)), orphans=(fresh, stale)), BackupKind.LOGICAL, RULE, NOW)
    assert [e.backup_set_id for e in plan.expire] == [stale.backup_set_id]
    assert plan.expire[0].complete is False


def test_a_rule_that_keeps_nothing_is_refused() -> None:
    with pytest.raises(RetentionRefused):
        RetentionRule(max_age=timedelta(days=1), orphan_max_age=timedelta(hours=1), min_keep=0)


@settings(max_examples=200, deadline=None)
@given(
    ages_hours=st.lists(st.integers(min_value=-48, max_value=24 * 400), max_size=40),
    window_days=st.integers(min_value=1, max_value=60),
)
def test_plan_never_drops_newest_or_young_sets_and_is_idempotent(ages_hours: list[int], window_days: int) -> None:
    rule = RetentionRule(max_age=timedelta(days=window_days), orphan_max_age=timedelta(hours=24))
    sets = [a_set(timedelta(hours=h)) for h in ages_hours]
    unique = {s.backup_set_id: s for s in sets}
    plan = plan_retention(listing(*unique.values()), BackupKind.LOGICAL, rule, NOW)
    expired = {e.backup_set_id for e in plan.expire}
    if unique:
        newest = max(unique.values(), key=lambda s: (s.finished_at, s.backup_set_id))
        assert newest.backup_set_id not in expired
    for set_id in expired:
        assert NOW - unique[set_id].finished_at > rule.max_age
    remaining = [s for s in unique.values() if s.backup_set_id not in expired]
    again = plan_retention(listing(*remaining), BackupKind.LOGICAL, rule, NOW)
    assert again.expire == ()
