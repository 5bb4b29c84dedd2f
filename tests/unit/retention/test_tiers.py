"""The tiered retention planner over whole random catalogs and clocks (hypothesis), plus the
rules that tie tiers together: exports go with their daily set, grandfather-father-son keeps,
WAL follows the base backups the same plan keeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hms_dr.catalog import BackupSet, CatalogListing, OrphanFolder
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind, Manifest, new_backup_set_id
from hms_dr.retention import (
    RetentionPlan,
    RetentionRule,
    RetentionTiers,
    StoreCatalog,
    plan_retention,
    plan_store_retention,
)
from hms_dr.retention.wal import wal_position
from hms_dr.wal.listing import StoredWalSet

EPOCH = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
CLUSTER = "hms-primary"


def segment(number: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{number >> 8:08X}{number & 0xFF:08X}"


def a_set(kind: BackupKind, finished_at: datetime, body: dict | None = None, set_id: str | None = None) -> BackupSet:
    set_id = set_id or new_backup_set_id(finished_at - timedelta(minutes=5))
    manifest = Manifest(kind, set_id, CLUSTER, finished_at - timedelta(minutes=5), finished_at, (), body or {})
    return BackupSet(manifest=manifest, manifest_key=f"{CLUSTER}/{kind.value}/{set_id}/manifest.json")


def listing(sets: list[BackupSet], orphans: tuple[OrphanFolder, ...] = ()) -> CatalogListing:
    unique = {s.backup_set_id: s for s in sets}
    return CatalogListing(sets=tuple(unique.values()), orphans=orphans, unreadable=())


# -- random catalogs ---------------------------------------------------------------------------

ages_h = st.integers(min_value=-24, max_value=24 * 500)


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[StoreCatalog, datetime]:
    now = EPOCH + timedelta(hours=draw(st.integers(min_value=0, max_value=24 * 365)))
    daily = [a_set(BackupKind.LOGICAL, now - timedelta(hours=h)) for h in draw(st.lists(ages_h, max_size=25))]
    # Exports: most share their daily set's id; a few stand alone (their daily set failed to publish).
    exports = {}
    for kind in (BackupKind.SCHEMA, BackupKind.DATA):
        twins = [a_set(kind, s.finished_at, set_id=s.backup_set_id) for s in daily if draw(st.booleans())]
        alone = [a_set(kind, now - timedelta(hours=h)) for h in draw(st.lists(ages_h, max_size=3))]
        exports[kind] = twins + alone
    bases = [
        a_set(BackupKind.BASE, now - timedelta(hours=h), body={"base_backup": {"start_wal_file": segment(seg)}})
        for h, seg in draw(st.lists(st.tuples(ages_h, st.integers(min_value=1, max_value=400)), max_size=8))
    ]
    reports = [a_set(BackupKind.RESTORE_TEST, now - timedelta(hours=h)) for h in draw(st.lists(ages_h, max_size=6))]
    wal = {
        segment(seg): StoredWalSet(segment(seg), complete, now - timedelta(hours=h))
        for seg, h, complete in draw(
            st.lists(st.tuples(st.integers(min_value=1, max_value=400), ages_h, st.booleans()), max_size=40)
        )
    }
    orphans = tuple(
        OrphanFolder(
            BackupKind.LOGICAL, new_backup_set_id(now - timedelta(hours=h, seconds=7)), ("k",), now - timedelta(hours=h)
        )
        for h in draw(st.lists(st.integers(min_value=0, max_value=96), max_size=3))
    )
    listings = {
        BackupKind.LOGICAL: listing(daily, orphans),
        BackupKind.SCHEMA: listing(exports[BackupKind.SCHEMA]),
        BackupKind.DATA: listing(exports[BackupKind.DATA]),
        BackupKind.BASE: listing(bases),
        BackupKind.RESTORE_TEST: listing(reports),
    }
    return StoreCatalog(listings=listings, wal_sets=tuple(wal.values())), now


tiers_strategy = st.builds(
    RetentionTiers,
    logical_days=st.integers(min_value=1, max_value=60),
    wal_days=st.integers(min_value=1, max_value=14),
    base_backups_keep=st.integers(min_value=1, max_value=6),
    restore_reports_days=st.integers(min_value=1, max_value=400),
    offsite_days=st.integers(min_value=1, max_value=120),
    orphan_max_age=st.just(timedelta(hours=24)),
    weekly_keep=st.integers(min_value=0, max_value=5),
    monthly_keep=st.integers(min_value=0, max_value=3),
)


def expired_complete(plan: RetentionPlan) -> set[str]:
    return {e.backup_set_id for e in plan.expire if e.complete}


def after_applying(catalog: StoreCatalog, plans: dict[BackupKind, RetentionPlan]) -> StoreCatalog:
    """The catalog a store would list once every plan was applied."""
    listings = {}
    for kind, old in catalog.listings.items():
        gone = {e.backup_set_id for e in plans[kind].expire}
        listings[kind] = CatalogListing(
            sets=tuple(s for s in old.sets if s.backup_set_id not in gone),
            orphans=tuple(o for o in old.orphans if o.backup_set_id not in gone),
            unreadable=(),
        )
    gone_wal = {e.backup_set_id for e in plans[BackupKind.WAL].expire}
    return StoreCatalog(listings=listings, wal_sets=tuple(w for w in catalog.wal_sets if w.name not in gone_wal))


def window_of(kind: BackupKind, tiers: RetentionTiers, offsite: bool) -> timedelta | None:
    if offsite:
        return timedelta(days=tiers.offsite_days)
    return {
        BackupKind.LOGICAL: timedelta(days=tiers.logical_days),
        BackupKind.SCHEMA: timedelta(days=tiers.logical_days),
        BackupKind.DATA: timedelta(days=tiers.logical_days),
        BackupKind.RESTORE_TEST: timedelta(days=tiers.restore_reports_days),
        BackupKind.WAL: timedelta(days=tiers.wal_days),
        BackupKind.BASE: None,  # a count, not a window
    }[kind]


@settings(max_examples=300, deadline=None)
@given(drawn=catalogs(), tiers=tiers_strategy, offsite=st.booleans())
def test_random_catalogs_keep_the_newest_the_young_and_the_wal_of_kept_base_backups(
    drawn: tuple[StoreCatalog, datetime], tiers: RetentionTiers, offsite: bool
) -> None:
    catalog, now = drawn
    plans = plan_store_retention(catalog, tiers, now, offsite=offsite)

    # The newest complete set of each kind is never deleted.
    for kind, sets in ((k, catalog.listing(k).sets) for k in catalog.listings):
        if sets:
            newest = max(sets, key=lambda s: (s.finished_at, s.backup_set_id))
            assert newest.backup_set_id not in expired_complete(plans[kind]), (kind, newest.backup_set_id)
    complete_wal = [w for w in catalog.wal_sets if w.complete]
    if complete_wal:
        assert max(w.name for w in complete_wal) not in expired_complete(plans[BackupKind.WAL])

    # Nothing younger than its retention is deleted; base backups keep their count.
    for kind in catalog.listings:
        window = window_of(kind, tiers, offsite)
        by_id = {s.backup_set_id: s for s in catalog.listing(kind).sets}
        for set_id in expired_complete(plans[kind]):
            if window is not None:
                assert now - by_id[set_id].finished_at > window, (kind, set_id)
            else:
                newest_n = sorted(by_id.values(), key=lambda s: (s.finished_at, s.backup_set_id))[
                    -tiers.base_backups_keep :
                ]
                assert set_id not in {s.backup_set_id for s in newest_n}
    wal_window = window_of(BackupKind.WAL, tiers, offsite)
    assert wal_window is not None
    wal_by_name = {w.name: w for w in catalog.wal_sets}
    for name in expired_complete(plans[BackupKind.WAL]):
        assert now - wal_by_name[name].modified_at >= wal_window  # retention.wal's window is half-open
    for plan in plans.values():
        for expiry in plan.expire:
            if not expiry.complete:
                assert expiry.backup_set_id not in plan.keep  # an orphan is never a kept set

    # Every retained base backup keeps the WAL from its start onward.
    kept_bases = [s for s in catalog.listing(BackupKind.BASE).sets if s.backup_set_id in plans[BackupKind.BASE].keep]
    expired_wal = expired_complete(plans[BackupKind.WAL])
    for base in kept_bases:
        start = wal_position(base.manifest.body["base_backup"]["start_wal_file"])
        assert start is not None
        needed = {w.name for w in complete_wal if (wal_position(w.name) or "") >= start}
        assert not needed & expired_wal, (base.backup_set_id, sorted(needed & expired_wal))

    # Applying the plans, then planning again, deletes nothing the second time.
    again = plan_store_retention(after_applying(catalog, plans), tiers, now, offsite=offsite)
    assert {kind: plan.expire for kind, plan in again.items()} == {kind: () for kind in again}


# -- the rules between tiers -------------------------------------------------------------------

NOW = EPOCH
TIERS = RetentionTiers()


def test_exports_stay_as_long_as_their_daily_set_even_past_their_own_window() -> None:
    kept_weekly = a_set(BackupKind.LOGICAL, NOW - timedelta(days=40))
    newer = a_set(BackupKind.LOGICAL, NOW - timedelta(days=1))
    export = a_set(BackupKind.SCHEMA, kept_weekly.finished_at, set_id=kept_weekly.backup_set_id)
    lone_old_export = a_set(BackupKind.SCHEMA, NOW - timedelta(days=50))
    catalog = StoreCatalog(
        listings={
            BackupKind.LOGICAL: listing([kept_weekly, newer]),
            BackupKind.SCHEMA: listing(
                [export, lone_old_export, a_set(BackupKind.SCHEMA, newer.finished_at, set_id=newer.backup_set_id)]
            ),
        }
    )
    plans = plan_store_retention(catalog, replace(TIERS, weekly_keep=8), NOW, offsite=False)
    assert kept_weekly.backup_set_id in plans[BackupKind.LOGICAL].keep
    assert export.backup_set_id in plans[BackupKind.SCHEMA].keep
    assert "with its daily set" in plans[BackupKind.SCHEMA].reasons[export.backup_set_id]
    assert expired_complete(plans[BackupKind.SCHEMA]) == {lone_old_export.backup_set_id}


def test_an_export_expires_with_its_daily_set() -> None:
    old = a_set(BackupKind.LOGICAL, NOW - timedelta(days=31))
    new = a_set(BackupKind.LOGICAL, NOW - timedelta(hours=3))
    exports = [a_set(BackupKind.DATA, s.finished_at, set_id=s.backup_set_id) for s in (old, new)]
    plans = plan_store_retention(
        StoreCatalog(listings={BackupKind.LOGICAL: listing([old, new]), BackupKind.DATA: listing(exports)}),
        TIERS,
        NOW,
        offsite=False,
    )
    assert (
        expired_complete(plans[BackupKind.LOGICAL]) == expired_complete(plans[BackupKind.DATA]) == {old.backup_set_id}
    )


def test_weekly_and_monthly_keeps_hold_the_newest_set_of_each_period() -> None:
    daily = [a_set(BackupKind.LOGICAL, NOW - timedelta(days=d)) for d in range(0, 120)]
    rule = RetentionRule(max_age=timedelta(days=7), orphan_max_age=timedelta(hours=24), weekly_keep=4, monthly_keep=3)
    plan = plan_retention(listing(daily), BackupKind.LOGICAL, rule, NOW)
    kept_old = sorted(
        (s for s in daily if s.backup_set_id in plan.keep and NOW - s.finished_at > timedelta(days=7)),
        key=lambda s: s.finished_at,
    )
    weekly = {s.backup_set_id for s in kept_old if "weekly" in plan.reasons[s.backup_set_id]}
    monthly = {s.backup_set_id for s in kept_old if "monthly" in plan.reasons[s.backup_set_id]}
    assert 1 <= len(weekly) <= 4 and 1 <= len(monthly) <= 3
    for set_id in weekly | monthly:
        # Each is the newest set of its ISO week / month: no newer set falls in the same period.
        kept = next(s for s in daily if s.backup_set_id == set_id)
        week = kept.finished_at.isocalendar()[:2]
        month = (kept.finished_at.year, kept.finished_at.month)
        same = [
            s
            for s in daily
            if (
                s.finished_at.isocalendar()[:2] == week
                if set_id in weekly
                else (s.finished_at.year, s.finished_at.month) == month
            )
        ]
        assert max(same, key=lambda s: s.finished_at).backup_set_id == set_id
    assert len(plan.keep) == len(
        {s.backup_set_id for s in daily if NOW - s.finished_at <= timedelta(days=7)} | weekly | monthly
    )


def test_wal_is_kept_from_the_oldest_base_backup_the_plan_keeps_not_the_oldest_stored() -> None:
    bases = [
        a_set(
            BackupKind.BASE,
            NOW - timedelta(days=7 * weeks),
            body={"base_backup": {"start_wal_file": segment(100 * (10 - weeks))}},
        )
        for weeks in range(1, 7)
    ]
    wal = tuple(StoredWalSet(segment(n), True, NOW - timedelta(days=60 - n / 20)) for n in range(0, 1000, 50))
    plans = plan_store_retention(
        StoreCatalog(listings={BackupKind.BASE: listing(bases)}, wal_sets=wal), TIERS, NOW, offsite=False
    )
    kept_starts = [
        s.manifest.body["base_backup"]["start_wal_file"]
        for s in bases
        if s.backup_set_id in plans[BackupKind.BASE].keep
    ]
    oldest_kept = min(kept_starts)
    assert len(kept_starts) == 4
    assert {w.name for w in wal if w.name >= oldest_kept} <= set(plans[BackupKind.WAL].keep)
    assert expired_complete(plans[BackupKind.WAL]) == {w.name for w in wal if w.name < oldest_kept}


def test_offsite_keeps_every_kind_for_its_window_and_base_backups_by_age() -> None:
    bases = [
        a_set(BackupKind.BASE, NOW - timedelta(days=d), body={"base_backup": {"start_wal_file": segment(d)}})
        for d in (7, 14, 80, 95)
    ]
    plans = plan_store_retention(StoreCatalog(listings={BackupKind.BASE: listing(bases)}), TIERS, NOW, offsite=True)
    assert expired_complete(plans[BackupKind.BASE]) == {bases[-1].backup_set_id}


def test_a_base_backup_manifest_without_its_wal_start_is_refused_not_guessed() -> None:
    base = a_set(BackupKind.BASE, NOW - timedelta(days=1), body={"base_backup": {}})
    with pytest.raises(ManifestInvalid):
        plan_store_retention(StoreCatalog(listings={BackupKind.BASE: listing([base])}), TIERS, NOW, offsite=False)


def test_applying_every_tier_to_a_real_store_twice_deletes_nothing_the_second_time(tmp_path: Any) -> None:
    import os

    from hms_dr.catalog import key_for
    from hms_dr.manifest import Payload
    from hms_dr.publish import publish_set
    from hms_dr.retention import expire_by_tiers
    from hms_dr.store import open_store

    (tmp_path / "nas").mkdir()
    store = open_store((tmp_path / "nas").as_uri())
    now = datetime.now(UTC)

    def publish(kind: BackupKind, age: timedelta, set_id: str | None = None, body: dict | None = None) -> str:
        set_id = set_id or new_backup_set_id(now - age)
        stored = store.put_bytes(key_for(CLUSTER, kind, set_id, "p.gpg"), os.urandom(64))
        publish_set(
            store,
            kind=kind,
            cluster=CLUSTER,
            backup_set_id=set_id,
            started_at=now - age,
            finished_at=now - age,
            payloads=[Payload("p.gpg", stored.size_bytes, stored.sha256, "t")],
            extra=body or {},
        )
        return set_id

    for days in (1, 20, 40, 60):
        daily = publish(BackupKind.LOGICAL, timedelta(days=days))
        publish(BackupKind.SCHEMA, timedelta(days=days), set_id=daily)
    for weeks, start in ((1, 300), (2, 200), (6, 100)):
        publish(BackupKind.BASE, timedelta(weeks=weeks), body={"base_backup": {"start_wal_file": segment(start)}})
    month_ago = (now - timedelta(days=30)).timestamp()
    for n in range(50, 350, 50):
        publish(BackupKind.WAL, timedelta(days=30), set_id=segment(n))
        for path in (tmp_path / "nas" / key_for(CLUSTER, BackupKind.WAL, segment(n))).iterdir():
            os.utime(path, (month_ago, month_ago))  # WAL is aged by its listing, as shipped
    publish(BackupKind.RESTORE_TEST, timedelta(days=400))
    publish(BackupKind.RESTORE_TEST, timedelta(days=10))
    tiers = replace(TIERS, base_backups_keep=2)

    first = expire_by_tiers(store, CLUSTER, tiers, now, offsite=False, kinds=tuple(BackupKind))
    assert {kind: len(entry.expired) for kind, entry in first.items()} == {
        "wal": 3,
        "logical": 2,
        "schema": 2,
        "data": 0,
        "base": 1,
        "restore-test": 1,
    }
    left = sorted(o.key for o in store.list())
    second = expire_by_tiers(store, CLUSTER, tiers, now, offsite=False, kinds=tuple(BackupKind))
    assert all(entry.expired == [] and entry.deleted_objects == 0 for entry in second.values())
    assert sorted(o.key for o in store.list()) == left
