"""The WAL expiry planner: 7 days of WAL, and never WAL that a retained base backup needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hms_dr.retention.wal import BaseBackupWal, oldest_base_backup, plan_wal_expiry, wal_position
from hms_dr.wal.listing import StoredWalSet

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
ORPHAN_MAX_AGE = timedelta(hours=24)


def segment(number: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{number >> 8:08X}{number & 0xFF:08X}"


def wal(number: int, age_days: float, *, timeline: int = 1, complete: bool = True) -> StoredWalSet:
    return StoredWalSet(segment(number, timeline), complete, NOW - timedelta(days=age_days))


def base(set_id: str, start: int) -> BaseBackupWal:
    return BaseBackupWal(set_id, segment(start))


def expired(wal_sets: list[StoredWalSet], bases: list[BaseBackupWal], keep_days: int = 7) -> set[str]:
    plan = plan_wal_expiry(wal_sets, bases, keep_days=keep_days, orphan_max_age=ORPHAN_MAX_AGE, now=NOW)
    return {e.backup_set_id for e in plan.expire}


def test_wal_before_the_oldest_base_backup_and_outside_the_window_expires() -> None:
    # one segment per day, 20 days old down to today; base backups start at segments 5 and 12
    wal_sets = [wal(n, 20 - n) for n in range(21)]
    assert expired(wal_sets, [base("b15", 5), base("b8", 12)]) == {segment(n) for n in range(5)}


def test_wal_inside_the_window_stays_even_before_every_base_backup() -> None:
    wal_sets = [wal(n, 20 - n) for n in range(21)]
    # the only base backup starts at segment 17; of the WAL before it only what is also outside
    # the window goes (segments 0..12 are 20..8 days old; 13, exactly 7 days old, is still inside)
    assert expired(wal_sets, [base("b3", 17)]) == {segment(n) for n in range(13)}


def test_nothing_expires_without_a_base_backup() -> None:
    assert expired([wal(n, 30 - n) for n in range(10)], []) == set()


def test_history_files_are_never_expired() -> None:
    history = StoredWalSet("00000002.history", True, NOW - timedelta(days=60))
    plan = plan_wal_expiry([history], [base("b", 50)], keep_days=7, orphan_max_age=ORPHAN_MAX_AGE, now=NOW)
    assert plan.expire == () and "always kept" in plan.reasons["00000002.history"]


def test_orphans_expire_after_a_day_whatever_their_position() -> None:
    stale = wal(30, 2, complete=False)
    fresh = wal(31, 0.1, complete=False)
    plan = plan_wal_expiry([stale, fresh], [base("b", 1)], keep_days=7, orphan_max_age=ORPHAN_MAX_AGE, now=NOW)
    assert [(e.backup_set_id, e.complete) for e in plan.expire] == [(stale.name, False)]


def test_positions_ignore_the_timeline_and_cover_backup_and_partial_files() -> None:
    assert wal_position("000000020000000A0000003F") == wal_position("000000010000000A0000003F") == "0000000A0000003F"
    assert wal_position("000000010000000A0000003F.00000028.backup") == "0000000A0000003F"
    assert wal_position("000000010000000A0000003F.partial") == "0000000A0000003F"
    assert wal_position("00000002.history") is None


def test_the_oldest_base_backup_is_the_one_whose_wal_starts_first() -> None:
    oldest = oldest_base_backup([base("b2", 30), base("b1", 7), base("b3", 44)])
    assert oldest is not None and oldest.backup_set_id == "b1"
    assert oldest_base_backup([]) is None


@settings(max_examples=300, deadline=None)
@given(
    ages=st.lists(st.floats(min_value=0, max_value=40), min_size=1, max_size=40),
    starts=st.lists(st.integers(0, 45), max_size=5),
    keep_days=st.integers(1, 14),
)
def test_no_expired_wal_is_needed_by_a_base_backup_or_inside_the_window(
    ages: list[float], starts: list[int], keep_days: int
) -> None:
    wal_sets = [wal(n, age) for n, age in enumerate(ages)]
    bases = [base(f"b{i}", start) for i, start in enumerate(starts)]
    gone = expired(wal_sets, bases, keep_days)
    for wal_set in wal_sets:
        if wal_set.name not in gone:
            continue
        assert bases, "WAL expired with no base backup in the store"
        assert wal_set.modified_at < NOW - timedelta(days=keep_days), f"{wal_set.name} expired inside the window"
        for b in bases:  # every retained base backup keeps the WAL from its start on
            assert wal_set.name < b.start_wal_file, f"{wal_set.name} expired but {b.backup_set_id} needs it"
    # applying the plan to what is left expires nothing more
    assert expired([s for s in wal_sets if s.name not in gone], bases, keep_days) == set()
