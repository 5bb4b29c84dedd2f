"""Base backup retention keeps chains of incremental backups whole: the rule counts full backups,
an incremental stays with its full, every link of a kept set stays, a broken chain is kept
unless it is older than the oldest kept full, nothing expires because of a manifest that cannot
be read, and a chain is deleted newest first (a deletion interrupted anywhere, or held back by a
lock, leaves chains that are shorter but whole). Examples first, then random forests of chains
(hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hms_dr.catalog import BackupSet, CatalogListing
from hms_dr.errors import BackupChainBroken, ManifestInvalid, ObjectLocked, RetentionRefused
from hms_dr.manifest import BackupKind, Manifest, new_backup_set_id
from hms_dr.physical.chain import ancestors_of, chain_fields_for_child, chain_link_of, resolve_chain
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

NOW = datetime(2026, 12, 20, 3, 30, tzinfo=UTC)
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CLUSTER = "hms-primary"
SYSTEM = "7400000000000000001"
KEEP_2 = RetentionRule.keep_newest(2, orphan_max_age=timedelta(hours=24))


def segment_at(moment: datetime) -> str:
    """A WAL segment name that grows with time (one segment an hour since EPOCH)."""
    number = int((moment - EPOCH).total_seconds() // 3600) + 1
    return f"00000001{number >> 8:08X}{number & 0xFF:08X}"


def a_base(finished_at: datetime, section: dict[str, Any] | None = None) -> BackupSet:
    started_at = finished_at - timedelta(minutes=30)
    set_id = new_backup_set_id(started_at)
    body = {"base_backup": {"system_identifier": SYSTEM, "start_wal_file": segment_at(started_at), **(section or {})}}
    manifest = Manifest(BackupKind.BASE, set_id, CLUSTER, started_at, finished_at, (), body)
    return BackupSet(manifest=manifest, manifest_key=f"{CLUSTER}/base/{set_id}/manifest.json")


def a_full(age: timedelta) -> BackupSet:
    return a_base(NOW - age)


def an_incremental(parent: BackupSet, after: timedelta = timedelta(days=1), **overrides: Any) -> BackupSet:
    return a_base(parent.finished_at + after, {**chain_fields_for_child(parent), **overrides})


def a_chain(age: timedelta, incrementals: int) -> list[BackupSet]:
    """A full backup ``age`` old and daily incrementals on it, oldest first."""
    sets = [a_full(age)]
    for _ in range(incrementals):
        sets.append(an_incremental(sets[-1]))
    return sets


def listing(*sets: BackupSet, unreadable: tuple[str, ...] = ()) -> CatalogListing:
    return CatalogListing(sets=tuple(sets), orphans=(), unreadable=unreadable)


def ids(sets: list[BackupSet]) -> list[str]:
    return [s.backup_set_id for s in sets]


def expired_ids(plan: RetentionPlan) -> list[str]:
    return [e.backup_set_id for e in plan.expire if e.complete]


# -- examples ----------------------------------------------------------------------------------


def test_the_count_is_of_full_backups_and_a_chain_goes_whole_newest_first() -> None:
    oldest, middle, newest = (
        a_chain(timedelta(weeks=3), 6),
        a_chain(timedelta(weeks=2), 6),
        a_chain(timedelta(weeks=1), 6),
    )
    plan = plan_retention(listing(*oldest, *middle, *newest), BackupKind.BASE, KEEP_2, NOW)
    assert sorted(plan.keep) == sorted(ids(middle + newest))
    assert expired_ids(plan) == ids(list(reversed(oldest)))  # the tip first, the full last
    assert plan.reasons[oldest[0].backup_set_id] == "not among the newest 2 full base backup(s) (21 days old)"
    assert plan.reasons[oldest[3].backup_set_id] == (
        f"in the chain of an expiring full backup ({oldest[0].backup_set_id}: "
        "not among the newest 2 full base backup(s) (21 days old))"
    )
    assert plan.reasons[middle[4].backup_set_id] == (
        f"in the chain of a kept full backup ({middle[0].backup_set_id}: among the newest 2 full base backup(s))"
    )
    # Each expiry carries the links a restore of it needs, for retention.apply to hold back.
    by_id = {e.backup_set_id: e for e in plan.expire}
    assert by_id[oldest[2].backup_set_id].needs == tuple(ids(oldest[:2]))
    assert by_id[oldest[0].backup_set_id].needs == ()


def test_incrementals_do_not_use_up_the_count() -> None:
    many = a_chain(timedelta(weeks=1), 7)
    older = a_chain(timedelta(weeks=2), 0)
    plan = plan_retention(listing(*older, *many), BackupKind.BASE, KEEP_2, NOW)
    assert plan.expire == () and len(plan.keep) == 9


def test_a_kept_set_keeps_every_link_of_its_chain_and_says_whose_link_it_is() -> None:
    old = a_chain(timedelta(weeks=3), 3)
    newer = [a_chain(timedelta(weeks=w), 0)[0] for w in (1, 2)]
    pinned = {old[2].backup_set_id: "named by an open restore request"}
    plan = plan_retention(listing(*old, *newer), BackupKind.BASE, KEEP_2, NOW, pinned=pinned)
    assert plan.expire == ()
    assert plan.reasons[old[2].backup_set_id] == "named by an open restore request"
    assert plan.reasons[old[1].backup_set_id] == f"a link of the chain of a kept set ({old[2].backup_set_id})"
    assert plan.reasons[old[0].backup_set_id] == f"a link of the chain of a kept set ({old[2].backup_set_id})"
    # The full is kept, so its whole chain is: an incremental goes exactly when its full goes.
    assert plan.reasons[old[3].backup_set_id].startswith(f"in the chain of a kept full backup ({old[0].backup_set_id}")


def test_a_full_kept_as_a_link_keeps_its_whole_chain() -> None:
    old = a_chain(timedelta(weeks=3), 2)
    sibling = an_incremental(old[0], timedelta(hours=5))  # a second incremental on the old full
    newer = [a_chain(timedelta(weeks=w), 0)[0] for w in (1, 2)]
    plan = plan_retention(
        listing(*old, sibling, *newer), BackupKind.BASE, KEEP_2, NOW, pinned={old[1].backup_set_id: "pinned"}
    )
    assert sibling.backup_set_id in plan.keep and old[2].backup_set_id in plan.keep
    assert "in the chain of a kept full backup" in plan.reasons[sibling.backup_set_id]


def test_a_broken_chain_is_kept_unless_older_than_the_oldest_kept_full() -> None:
    old = a_chain(timedelta(weeks=4), 3)  # old[1] goes missing: old[2] and old[3] are broken
    kept_fulls = [a_chain(timedelta(weeks=w), 0)[0] for w in (2, 3)]
    recent = a_chain(timedelta(days=5), 2)
    missing_recent = recent[1]  # recent[2] broken but newer than the oldest kept full
    sets = [old[0], old[2], old[3], *kept_fulls, recent[0], recent[2]]
    plan = plan_retention(listing(*sets), BackupKind.BASE, RetentionRule.keep_newest(3, timedelta(hours=24)), NOW)
    assert expired_ids(plan) == [old[3].backup_set_id, old[2].backup_set_id, old[0].backup_set_id]
    reason = plan.reasons[old[2].backup_set_id]
    assert reason.startswith("its chain is broken and it is older than the oldest kept full backup")
    assert old[1].backup_set_id in reason and "is not in the store" in reason
    assert recent[2].backup_set_id in plan.keep
    assert plan.reasons[recent[2].backup_set_id].startswith("its chain is broken, but it is not older")
    assert missing_recent.backup_set_id in plan.reasons[recent[2].backup_set_id]


def test_a_kept_broken_incremental_keeps_the_links_it_still_has() -> None:
    old = a_chain(timedelta(weeks=4), 3)
    newer = a_chain(timedelta(weeks=1), 0)
    # old[2] missing; old[3] finished after the newest full (a late run), so it is kept, and so
    # are old[0] and old[1], the links it still has.
    late = an_incremental(old[2], timedelta(weeks=3, days=2))
    plan = plan_retention(listing(old[0], old[1], late, *newer), BackupKind.BASE, KEEP_2, NOW)
    assert plan.expire == ()
    assert plan.reasons[old[1].backup_set_id] == f"a link of the chain of a kept set ({late.backup_set_id})"


def test_a_missing_link_whose_manifest_cannot_be_read_expires_nothing() -> None:
    old = a_chain(timedelta(weeks=4), 2)
    newer = [a_chain(timedelta(weeks=w), 0)[0] for w in (1, 2)]
    unreadable = (old[1].manifest_key,)
    plan = plan_retention(listing(old[0], old[2], *newer, unreadable=unreadable), BackupKind.BASE, KEEP_2, NOW)
    assert plan.expire == ()
    assert plan.reasons[old[2].backup_set_id] == (
        f"a link of its chain has a manifest that cannot be read ({old[1].backup_set_id})"
    )
    # old[0] is older than the unreadable set, which may be an incremental on it.
    assert plan.reasons[old[0].backup_set_id].startswith("may be a link of the chain of a set whose chain cannot")
    assert plan.unreadable == unreadable


def test_a_set_whose_chain_fields_cannot_be_read_is_kept_with_every_older_set() -> None:
    old = [a_chain(timedelta(weeks=w), 1) for w in (5, 4)]
    strange = a_base(NOW - timedelta(weeks=3), {"backup_type": "differential"})
    newer = [a_chain(timedelta(weeks=w), 0)[0] for w in (1, 2)]
    plan = plan_retention(listing(*old[0], *old[1], strange, *newer), BackupKind.BASE, KEEP_2, NOW)
    assert plan.expire == ()
    assert "its chain fields cannot be read" in plan.reasons[strange.backup_set_id]
    assert "backup_type 'differential'" in plan.reasons[strange.backup_set_id]
    assert strange.manifest_key in plan.unreadable  # reported, as apply reports unreadable manifests


def test_an_unreadable_newer_manifest_holds_the_older_sets_but_not_the_newer() -> None:
    old = a_chain(timedelta(weeks=5), 1)
    middle = a_chain(timedelta(weeks=3), 1)
    newer = [a_chain(timedelta(weeks=w), 0)[0] for w in (1, 2)]
    unreadable_id = new_backup_set_id(NOW - timedelta(weeks=4))
    plan = plan_retention(
        listing(*old, *middle, *newer, unreadable=(f"{CLUSTER}/base/{unreadable_id}/manifest.json",)),
        BackupKind.BASE,
        KEEP_2,
        NOW,
    )
    assert expired_ids(plan) == ids(list(reversed(middle)))
    assert set(ids(old)) <= set(plan.keep)


def test_the_offsite_window_counts_full_backups_too() -> None:
    old = a_chain(timedelta(days=100), 4)  # its incrementals are 96 to 99 days old
    recent = a_chain(timedelta(days=10), 3)
    wal = tuple(StoredWalSet(s.manifest.body["base_backup"]["start_wal_file"], True, NOW) for s in old + recent)
    plans = plan_store_retention(
        StoreCatalog(listings={BackupKind.BASE: listing(*old, *recent)}, wal_sets=wal),
        RetentionTiers(offsite_days=90),
        NOW,
        offsite=True,
    )
    assert expired_ids(plans[BackupKind.BASE]) == ids(list(reversed(old)))
    assert plans[BackupKind.BASE].reasons[recent[3].backup_set_id].startswith("in the chain of a kept full backup")


def test_wal_is_kept_from_the_start_of_the_oldest_kept_set_which_is_a_full() -> None:
    chains = [a_chain(timedelta(weeks=w), 5) for w in (4, 3, 2, 1)]
    everything = [s for chain in chains for s in chain]
    hourly = tuple(
        StoredWalSet(segment_at(NOW - timedelta(hours=h)), True, NOW - timedelta(hours=h)) for h in range(24 * 30)
    )
    plans = plan_store_retention(
        StoreCatalog(listings={BackupKind.BASE: listing(*everything)}, wal_sets=hourly),
        RetentionTiers(base_backups_keep=2, wal_days=7),
        NOW,
        offsite=False,
    )
    kept = [s for s in everything if s.backup_set_id in plans[BackupKind.BASE].keep]
    oldest = min(kept, key=lambda s: s.finished_at)
    assert oldest == chains[2][0] and not chain_link_of(oldest).is_incremental
    start = oldest.manifest.body["base_backup"]["start_wal_file"]
    assert {w.name for w in hourly if w.name >= start} <= set(plans[BackupKind.WAL].keep)
    assert set(expired_ids(plans[BackupKind.WAL])) == {w.name for w in hourly if w.name < start}


# -- applying: the deletion order, and a set that stays holds its links back --------------------


class FailingStore:
    """A real store whose deletes of chosen keys fail (as a lock that the check missed, or an error)."""

    def __init__(self, store: Any, failing: dict[str, Exception]) -> None:
        self._store = store
        self._failing = failing
        self.deleted: list[str] = []

    def delete(self, key: str) -> None:
        if key in self._failing:
            raise self._failing[key]
        self._store.delete(key)
        self.deleted.append(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def published_chain(tmp_path: Path, ages_weeks: tuple[int, ...], incrementals: int) -> tuple[Any, list[list[str]]]:
    import os

    from hms_dr.catalog import key_for
    from hms_dr.manifest import Payload
    from hms_dr.publish import publish_set
    from hms_dr.store import open_store

    (tmp_path / "nas").mkdir()
    store = open_store((tmp_path / "nas").as_uri())
    chains = []
    for weeks in ages_weeks:
        sets = a_chain(timedelta(weeks=weeks), incrementals)
        for backup_set in sets:
            stored = store.put_bytes(
                key_for(CLUSTER, BackupKind.BASE, backup_set.backup_set_id, "base.tar"), os.urandom(32)
            )
            publish_set(
                store,
                kind=BackupKind.BASE,
                cluster=CLUSTER,
                backup_set_id=backup_set.backup_set_id,
                started_at=backup_set.manifest.started_at,
                finished_at=backup_set.finished_at,
                payloads=[Payload("base.tar", stored.size_bytes, stored.sha256, "t")],
                extra={"base_backup": dict(backup_set.manifest.body["base_backup"])},
            )
        chains.append(ids(sets))
    return store, chains


def manifest_key(set_id: str) -> str:
    return f"{CLUSTER}/base/{set_id}/manifest.json"


def test_applying_deletes_a_chain_tip_first_manifest_before_payload(tmp_path: Path) -> None:
    from hms_dr.catalog import list_catalog
    from hms_dr.retention import apply_retention_plan

    store, (old, new) = published_chain(tmp_path, (3, 1), 3)
    keep_1 = RetentionRule.keep_newest(1, timedelta(hours=24))
    plan = plan_retention(list_catalog(store, CLUSTER, BackupKind.BASE), BackupKind.BASE, keep_1, NOW)
    outcome = apply_retention_plan(plan, store, CLUSTER, now=NOW)
    manifests = [key for key in outcome.deleted if key.endswith("manifest.json")]
    assert manifests == [manifest_key(i) for i in reversed(old)]
    assert {s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.BASE).sets} == set(new)


def test_a_set_that_stays_holds_back_every_link_of_its_chain(tmp_path: Path) -> None:
    from hms_dr.catalog import list_catalog
    from hms_dr.retention import apply_retention_plan

    store, (old, new) = published_chain(tmp_path, (3, 1), 3)
    plan = plan_retention(
        list_catalog(store, CLUSTER, BackupKind.BASE), BackupKind.BASE, RetentionRule.keep_newest(1, timedelta(1)), NOW
    )
    locked = FailingStore(store, {manifest_key(old[2]): ObjectLocked("locked until 2027-03-01")})
    outcome = apply_retention_plan(plan, locked, CLUSTER, now=NOW)  # type: ignore[arg-type]
    assert manifest_key(old[3]) in outcome.deleted and outcome.locked == {old[2]: "locked until 2027-03-01"}
    assert set(outcome.held) == {old[0], old[1]}
    assert outcome.held[old[1]] == f"a link of the chain of {old[2]}, which Object Lock holds"
    left = {s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.BASE).sets}
    assert left == {*old[:3], *new}
    resolve_chain(
        next(s for s in list_catalog(store, CLUSTER, BackupKind.BASE).sets if s.backup_set_id == old[2]),
        {s.backup_set_id: s for s in list_catalog(store, CLUSTER, BackupKind.BASE).sets},
    )  # still whole

    failing = FailingStore(store, {manifest_key(old[1]): RetentionRefused("disk full")})
    plan = plan_retention(
        list_catalog(store, CLUSTER, BackupKind.BASE), BackupKind.BASE, RetentionRule.keep_newest(1, timedelta(1)), NOW
    )
    with pytest.raises(RetentionRefused, match="1 expiry"):
        apply_retention_plan(plan, failing, CLUSTER, now=NOW)  # type: ignore[arg-type]
    left = {s.backup_set_id for s in list_catalog(store, CLUSTER, BackupKind.BASE).sets}
    assert left == {old[0], old[1], *new}  # old[2] went; old[1] failed, so old[0] stayed


def test_expire_by_tiers_reports_a_held_link_with_the_locked_sets(tmp_path: Path) -> None:
    from hms_dr.retention import RetentionTiers, expire_by_tiers

    store, (old, _new) = published_chain(tmp_path, (3, 1), 2)
    locked = FailingStore(store, {manifest_key(old[2]): ObjectLocked("locked")})
    report = expire_by_tiers(
        locked,  # type: ignore[arg-type]
        CLUSTER,
        RetentionTiers(base_backups_keep=1),
        NOW,
        offsite=False,
        kinds=(BackupKind.BASE,),
    )
    assert report["base"].expired == []
    assert set(report["base"].locked) == set(old)


# -- random forests of chains ------------------------------------------------------------------


@st.composite
def forests(draw: st.DrawFn) -> tuple[CatalogListing, datetime]:
    """Several full backups, each with 0..7 incrementals taken on it or on one of its
    incrementals (parents always older), some links missing, some manifests unreadable."""
    now = NOW + timedelta(hours=draw(st.integers(min_value=-24 * 30, max_value=24 * 30)))
    sets: dict[str, BackupSet] = {}
    for full_age in draw(st.lists(st.integers(min_value=0, max_value=24 * 200), max_size=6)):
        full = a_base(now - timedelta(hours=full_age, minutes=draw(st.integers(0, 59))))
        if full.backup_set_id in sets:
            continue
        chain = [full]
        sets[full.backup_set_id] = full
        for _ in range(draw(st.integers(min_value=0, max_value=7))):
            parent = chain[draw(st.integers(min_value=0, max_value=len(chain) - 1))]
            child = an_incremental(parent, timedelta(minutes=draw(st.integers(min_value=31, max_value=24 * 60 * 3))))
            if child.backup_set_id in sets:
                continue
            chain.append(child)
            sets[child.backup_set_id] = child
    fates = {set_id: draw(st.sampled_from(["present"] * 6 + ["missing"])) for set_id in sets}
    if sets and draw(st.integers(min_value=0, max_value=4)) == 0:  # now and then, one unreadable manifest
        fates[draw(st.sampled_from(sorted(sets)))] = "unreadable"
    present = tuple(s for s in sets.values() if fates[s.backup_set_id] == "present")
    unreadable = tuple(s.manifest_key for s in sets.values() if fates[s.backup_set_id] == "unreadable")
    return CatalogListing(sets=present, orphans=(), unreadable=unreadable), now


rules = st.builds(
    RetentionRule,
    max_age=st.one_of(st.none(), st.integers(min_value=1, max_value=200).map(lambda d: timedelta(days=d))),
    orphan_max_age=st.just(timedelta(hours=24)),
    min_keep=st.integers(min_value=1, max_value=6),
    weekly_keep=st.integers(min_value=0, max_value=3),
    monthly_keep=st.integers(min_value=0, max_value=2),
)


def whole_chain_full(backup_set: BackupSet, by_id: dict[str, BackupSet]) -> str | None:
    """The full backup of ``backup_set``'s chain when that chain is whole, else None."""
    try:
        return resolve_chain(backup_set, by_id).full.backup_set_id
    except (BackupChainBroken, ManifestInvalid):
        return None


@settings(max_examples=300, deadline=None)
@given(drawn=forests(), rule=rules)
def test_random_forests_keep_chains_whole(drawn: tuple[CatalogListing, datetime], rule: RetentionRule) -> None:
    catalog, now = drawn
    plan = plan_retention(catalog, BackupKind.BASE, rule, now)
    by_id = {s.backup_set_id: s for s in catalog.sets}
    links = {set_id: chain_link_of(s) for set_id, s in by_id.items()}
    kept, expired = set(plan.keep), expired_ids(plan)

    # Every set is decided once, and every expiry says why, in the plan.
    assert kept.isdisjoint(expired) and kept | set(expired) == set(by_id) and len(expired) == len(set(expired))
    for expiry in plan.expire:
        assert expiry.reason and plan.reasons[expiry.backup_set_id] == expiry.reason
    assert all(plan.reasons[set_id] for set_id in kept)

    # (a) Every kept set has every link of its chain that the store holds kept.
    for set_id in kept:
        assert not set(ancestors_of(links[set_id], links)) & set(expired), set_id

    # (b) The newest fulls the rule counts stay, and so does a whole chain on a kept full.
    fulls = sorted(
        (s for s in catalog.sets if not links[s.backup_set_id].is_incremental),
        key=lambda s: (s.finished_at, s.backup_set_id),
    )
    newest_fulls = fulls[-rule.min_keep :]
    assert not {s.backup_set_id for s in newest_fulls} & set(expired)
    for set_id, link in links.items():
        full_id = whole_chain_full(by_id[set_id], by_id) if link.is_incremental else None
        if full_id is not None:
            assert (set_id in kept) == (full_id in kept), (set_id, full_id)  # exactly with its full
        elif link.is_incremental and set_id in expired:
            # A broken chain expires only when older than the kept fulls the rule counts.
            assert by_id[set_id].finished_at < newest_fulls[0].finished_at
            assert plan.reasons[set_id].startswith("its chain is broken and it is older")

    # Nothing expires that an unreadable manifest's set may need (every set older than it).
    for key in catalog.unreadable:
        unreadable_started = datetime.strptime(key.split("/")[-2], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert all(by_id[set_id].finished_at > unreadable_started for set_id in expired)

    # (c) A set is never deleted before a set that needs it: after every prefix of the deletions
    # (an interrupted run), each remaining chain that was whole is still whole.
    position = {set_id: index for index, set_id in enumerate(expired)}
    for set_id in expired:
        for needed in ancestors_of(links[set_id], links):
            if needed in position:
                assert position[needed] > position[set_id], (needed, set_id)
    whole_before = {set_id for set_id in by_id if whole_chain_full(by_id[set_id], by_id) is not None}
    for done in range(len(expired) + 1):
        remaining = {i: s for i, s in by_id.items() if i not in expired[:done]}
        for set_id in whole_before & set(remaining):
            assert whole_chain_full(remaining[set_id], remaining) is not None, (set_id, expired[:done])

    # Applying the plan and planning again expires nothing more.
    after = CatalogListing(
        sets=tuple(s for s in catalog.sets if s.backup_set_id in kept), orphans=(), unreadable=catalog.unreadable
    )
    assert plan_retention(after, BackupKind.BASE, rule, now).expire == ()


@settings(max_examples=150, deadline=None)
@given(drawn=forests(), keep=st.integers(min_value=1, max_value=5), offsite=st.booleans(), wal_days=st.integers(1, 14))
def test_random_forests_keep_the_wal_of_every_kept_set(
    drawn: tuple[CatalogListing, datetime], keep: int, offsite: bool, wal_days: int
) -> None:
    catalog, now = drawn
    starts = {s.manifest.body["base_backup"]["start_wal_file"] for s in catalog.sets}
    wal = tuple(StoredWalSet(name, True, now - timedelta(days=30)) for name in sorted(starts))
    tiers = RetentionTiers(base_backups_keep=keep, offsite_days=60, wal_days=wal_days)
    plans = plan_store_retention(
        StoreCatalog(listings={BackupKind.BASE: catalog}, wal_sets=wal), tiers, now, offsite=offsite
    )
    kept = [s for s in catalog.sets if s.backup_set_id in plans[BackupKind.BASE].keep]
    expired_wal = set(expired_ids(plans[BackupKind.WAL]))
    for backup_set in kept:
        start = wal_position(backup_set.manifest.body["base_backup"]["start_wal_file"])
        assert start is not None
        assert not {w.name for w in wal if (wal_position(w.name) or "") >= start} & expired_wal
    by_id = {s.backup_set_id: s for s in catalog.sets}
    if kept and all(whole_chain_full(s, by_id) is not None for s in kept):
        # Every kept chain whole: the oldest kept set is a full, and the WAL follows from its start.
        oldest = min(kept, key=lambda s: (s.finished_at, s.backup_set_id))
        assert not chain_link_of(oldest).is_incremental
