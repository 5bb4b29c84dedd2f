"""Retention: which backup sets and leftovers to delete, decided by a pure planner.

``plan_retention`` takes a catalog listing, a rule and an explicit ``now`` and returns a plan
that carries its reasons; it reads no clock, store or database, so its safety rules are tested
directly. ``plan_store_retention`` plans every tier of one store at once (daily sets with their
exports, base backups and the WAL they need, restore-test reports; or the offsite store's
window). ``apply_retention`` is a short loop over the plan: manifest first, payloads after, so
a crash part-way leaves an orphan (cleaned up next time), never a set that looks complete; a set
still under Object Lock is left whole and reported.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from hms_dr.catalog import BackupSet, CatalogListing, key_for, list_catalog
from hms_dr.errors import HmsDrError, ManifestInvalid, ObjectLocked, ObjectMissing, RetentionRefused
from hms_dr.manifest import MANIFEST_NAME, BackupKind
from hms_dr.wal.listing import StoredWalSet, read_wal_sets

if TYPE_CHECKING:
    from hms_dr.store import Store
    from hms_dr.wal.expiry import BaseBackupWal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionRule:
    max_age: timedelta | None  # complete sets older than this expire (None: no window, count only)...
    orphan_max_age: timedelta  # ...payloads without a manifest after this long
    min_keep: int = 1  # ...but never the newest min_keep complete sets
    # Grandfather-father-son: also keep the newest set of each of the newest N ISO weeks and N
    # calendar months that hold a set, whatever its age (0: off).
    weekly_keep: int = 0
    monthly_keep: int = 0

    def __post_init__(self) -> None:
        if self.min_keep < 1:
            raise RetentionRefused("retention must always keep at least the newest complete set")
        if self.weekly_keep < 0 or self.monthly_keep < 0:
            raise RetentionRefused("weekly and monthly keeps cannot be negative")

    @classmethod
    def keep_newest(cls, count: int, orphan_max_age: timedelta) -> RetentionRule:
        """Keep the newest ``count`` complete sets whatever their age, expire the rest (base backups: keep 4)."""
        return cls(max_age=None, orphan_max_age=orphan_max_age, min_keep=count)


@dataclass(frozen=True)
class Expiry:
    kind: BackupKind
    backup_set_id: str
    complete: bool  # a set with a manifest (False: an orphan folder)
    reason: str


@dataclass(frozen=True)
class RetentionPlan:
    keep: tuple[str, ...]
    expire: tuple[Expiry, ...]
    reasons: dict[str, str]  # backup_set_id -> why it is kept or expired
    unreadable: tuple[str, ...] = ()


def plan_retention(
    listing: CatalogListing,
    kind: BackupKind,
    rule: RetentionRule,
    now: datetime,
    *,
    pinned: Mapping[str, str] | None = None,
) -> RetentionPlan:
    """Decide what expires. Never the newest ``min_keep`` sets, never a set inside its window,
    never a weekly/monthly keep, never a ``pinned`` set (set id -> why it must stay)."""
    sets = sorted(listing.sets, key=lambda s: (s.finished_at, s.backup_set_id))
    protected = {s.backup_set_id for s in sets[-rule.min_keep:]}
    long_term = {**grandfather_father_son_keeps(sets, rule), **(pinned or {})}
    keep: list[str] = []
    expire: list[Expiry] = []
    reasons: dict[str, str] = {}
    for backup_set in sets:
        set_id = backup_set.backup_set_id
        age = now - backup_set.finished_at
        if set_id in protected:
            keep.append(set_id)
            reasons[set_id] = f"among the newest {rule.min_keep} complete set(s)"
        elif set_id in long_term:
            keep.append(set_id)
            reasons[set_id] = long_term[set_id]
        elif rule.max_age is not None and age <= rule.max_age:
            keep.append(set_id)
            reasons[set_id] = f"inside the {describe_age(rule.max_age)} window ({describe_age(age)} old)"
        else:
            reason = (
                f"older than the {describe_age(rule.max_age)} window ({describe_age(age)} old)" if rule.max_age is not None
                else f"not among the newest {rule.min_keep} complete set(s) ({describe_age(age)} old)"
            )
            expire.append(Expiry(kind, set_id, True, reason))
            reasons[set_id] = reason
    complete_ids = {s.backup_set_id for s in sets}
    for orphan in listing.orphans:
        if orphan.backup_set_id in complete_ids:
            continue
        age = now - orphan.newest_modified_at
        if age > rule.orphan_max_age:
            reason = f"payloads without a manifest, last written {describe_age(age)} ago (interrupted run)"
            expire.append(Expiry(kind, orphan.backup_set_id, False, reason))
            reasons[orphan.backup_set_id] = reason
    return RetentionPlan(keep=tuple(keep), expire=tuple(expire), reasons=reasons, unreadable=listing.unreadable)


def grandfather_father_son_keeps(sets: Sequence[BackupSet], rule: RetentionRule) -> dict[str, str]:
    """The newest set of each of the newest ``weekly_keep`` ISO weeks and ``monthly_keep`` months
    that hold a set (as restic's --keep-weekly: gaps do not use up a keep): set id -> reason."""
    keeps: dict[str, str] = {}
    periods: tuple[tuple[int, str, Callable[[datetime], str]], ...] = (
        (rule.weekly_keep, "weekly", lambda at: "{0:04d}-W{1:02d}".format(*at.isocalendar())),
        (rule.monthly_keep, "monthly", lambda at: f"{at.year:04d}-{at.month:02d}"),
    )
    for count, label, period_of in periods:
        if count < 1:
            continue
        newest_in: dict[str, str] = {}
        for backup_set in sorted(sets, key=lambda s: (s.finished_at, s.backup_set_id)):
            newest_in[period_of(backup_set.finished_at.astimezone(timezone.utc))] = backup_set.backup_set_id
        for period in sorted(newest_in, reverse=True)[:count]:
            keeps.setdefault(newest_in[period], f"{label} keep (grandfather-father-son) for {period}")
    return keeps


@dataclass(frozen=True)
class RetentionOutcome:
    """What applying a plan did: the keys deleted in order, and the sets Object Lock still holds."""

    deleted: tuple[str, ...]
    locked: Mapping[str, str] = field(default_factory=dict)  # set id -> which objects are locked, until when


def apply_retention(plan: RetentionPlan, store: Store, cluster: str) -> list[str]:
    """Delete what the plan expires, manifest first; the keys deleted, in order. Finishes the
    loop on errors and raises one summary error at the end; a set under Object Lock is logged and kept."""
    return list(apply_retention_plan(plan, store, cluster, now=datetime.now(timezone.utc)).deleted)


def apply_retention_plan(plan: RetentionPlan, store: Store, cluster: str, *, now: datetime) -> RetentionOutcome:
    """As :func:`apply_retention`; in a store with Object Lock every object of an expiring set is
    checked first and a set with any locked object is left whole and reported, never half deleted."""
    deleted: list[str] = []
    locked: dict[str, str] = {}
    failures: list[str] = []
    for expiry in plan.expire:
        folder = key_for(cluster, expiry.kind, expiry.backup_set_id)
        manifest_key = folder + MANIFEST_NAME
        try:
            keys = [obj.key for obj in store.list(folder)]
            lock = _lock_of(store, keys, now) if store.features.supports_object_lock else None
            if lock is not None:
                locked[expiry.backup_set_id] = lock
                log.warning("kept %s set %s: %s (it expires: %s)", expiry.kind.value, expiry.backup_set_id, lock, expiry.reason)
                continue
            if expiry.complete and manifest_key in keys:
                store.delete(manifest_key)  # from here on the set no longer exists for anyone
                deleted.append(manifest_key)
            for key in keys:
                if key == manifest_key:
                    continue
                try:
                    store.delete(key)
                except ObjectMissing:
                    continue
                deleted.append(key)
            log.info("expired %s set %s (%d objects): %s", expiry.kind.value, expiry.backup_set_id, len(keys), expiry.reason)
        except ObjectLocked as exc:
            # The lock check above saw none (a listing race, or a lock the head did not show).
            locked[expiry.backup_set_id] = exc.message
            log.warning("%s", exc.message)
        except HmsDrError as exc:
            failures.append(f"{store.describe(folder)}: {exc.message}")
    for key in plan.unreadable:
        log.warning("retention left %s alone: its manifest cannot be read", store.describe(key))
    if failures:
        raise RetentionRefused(f"{len(failures)} expiry(ies) failed; first: {failures[0]}")
    return RetentionOutcome(deleted=tuple(deleted), locked=locked)


def _lock_of(store: Store, keys: Iterable[str], now: datetime) -> str | None:
    """Why Object Lock forbids deleting these objects now, or None when nothing is locked."""
    held = [obj for obj in (store.stat(key) for key in keys) if obj.locked_at(now)]
    if not held:
        return None
    if any(obj.legal_hold for obj in held):
        return f"{len(held)} object(s) under Object Lock, a legal hold among them"
    until = max(obj.retained_until for obj in held if obj.retained_until is not None)
    return f"{len(held)} object(s) under Object Lock until {until:%Y-%m-%d %H:%M} UTC"


def describe_age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.1f} hours"


# -- every tier of one store -----------------------------------------------------------------

DAILY_EXPORT_KINDS = (BackupKind.SCHEMA, BackupKind.DATA)


@dataclass(frozen=True)
class RetentionTiers:
    """How long each kind stays (the policy's ``retention:``): in the primary store per kind, in
    the offsite store one window for every kind."""

    logical_days: int = 30
    wal_days: int = 7
    base_backups_keep: int = 4
    restore_reports_days: int = 365
    offsite_days: int = 90
    orphan_max_age: timedelta = timedelta(hours=24)
    weekly_keep: int = 0  # grandfather-father-son keeps of daily sets, both stores
    monthly_keep: int = 0

    def rule_for(self, kind: BackupKind, *, offsite: bool) -> RetentionRule:
        """The rule of one kind's tier; WAL has none of its own (see plan_store_retention)."""
        daily = kind in (BackupKind.LOGICAL, *DAILY_EXPORT_KINDS)
        # Exports take their long-term keeps from their daily set (plan_store_retention pins them).
        gfs = {"weekly_keep": self.weekly_keep, "monthly_keep": self.monthly_keep} if kind is BackupKind.LOGICAL else {}
        if offsite:
            return RetentionRule(max_age=timedelta(days=self.offsite_days), orphan_max_age=self.orphan_max_age, **gfs)
        if daily:
            return RetentionRule(max_age=timedelta(days=self.logical_days), orphan_max_age=self.orphan_max_age, **gfs)
        if kind is BackupKind.BASE:
            return RetentionRule.keep_newest(self.base_backups_keep, self.orphan_max_age)
        if kind is BackupKind.RESTORE_TEST:
            return RetentionRule(max_age=timedelta(days=self.restore_reports_days), orphan_max_age=self.orphan_max_age)
        raise ValueError(f"{kind.value} sets have no rule of their own: WAL follows the base backups it serves")


@dataclass(frozen=True)
class StoreCatalog:
    """What one store holds, as retention needs it: the catalog of each kind, and WAL from its
    listing alone (thousands of sets: their manifests are never read)."""

    listings: Mapping[BackupKind, CatalogListing] = field(default_factory=dict)
    wal_sets: tuple[StoredWalSet, ...] = ()

    def listing(self, kind: BackupKind) -> CatalogListing:
        return self.listings.get(kind) or CatalogListing(sets=(), orphans=(), unreadable=())


def plan_store_retention(
    catalog: StoreCatalog, tiers: RetentionTiers, now: datetime, *, offsite: bool
) -> dict[BackupKind, RetentionPlan]:
    """Every tier's plan for one store. Schema-only and data-only exports stay as long as their
    daily set does (and by their own rule, so the newest export is never lost with an older
    daily set); WAL stays for its window and, whatever its age, from the start of the oldest base
    backup this same plan keeps: every retained base backup can be restored and rolled forward."""
    from hms_dr.wal.expiry import plan_wal_expiry  # wal.expiry builds on this module

    plans: dict[BackupKind, RetentionPlan] = {}
    daily = plan_retention(catalog.listing(BackupKind.LOGICAL), BackupKind.LOGICAL, tiers.rule_for(BackupKind.LOGICAL, offsite=offsite), now)
    plans[BackupKind.LOGICAL] = daily
    with_daily_set = {set_id: f"kept with its daily set ({daily.reasons[set_id]})" for set_id in daily.keep}
    for kind in DAILY_EXPORT_KINDS:
        plans[kind] = plan_retention(catalog.listing(kind), kind, tiers.rule_for(kind, offsite=offsite), now, pinned=with_daily_set)
    for kind in (BackupKind.BASE, BackupKind.RESTORE_TEST):
        plans[kind] = plan_retention(catalog.listing(kind), kind, tiers.rule_for(kind, offsite=offsite), now)
    kept_bases = set(plans[BackupKind.BASE].keep)
    base_wal = [base_backup_wal_start(s) for s in catalog.listing(BackupKind.BASE).sets if s.backup_set_id in kept_bases]
    wal_plan = plan_wal_expiry(
        catalog.wal_sets, base_wal, keep_days=tiers.offsite_days if offsite else tiers.wal_days,
        orphan_max_age=tiers.orphan_max_age, now=now,
    )
    plans[BackupKind.WAL] = keep_newest_wal_set(wal_plan, catalog.wal_sets)
    return plans


def keep_newest_wal_set(plan: RetentionPlan, wal_sets: Iterable[StoredWalSet]) -> RetentionPlan:
    """The archive's newest complete WAL set stays, like the newest set of every other kind, even
    when no kept base backup needs it (an archive that stopped long ago still shows where it ended)."""
    newest = max((s.name for s in wal_sets if s.complete), default=None)
    if newest is None or newest in plan.keep:
        return plan
    reasons = {**plan.reasons, newest: "the newest WAL set in the store"}
    expire = tuple(e for e in plan.expire if not (e.complete and e.backup_set_id == newest))
    return RetentionPlan(keep=(*plan.keep, newest), expire=expire, reasons=reasons, unreadable=plan.unreadable)


def base_backup_wal_start(backup_set: BackupSet) -> BaseBackupWal:
    """Where a base backup's WAL starts; ManifestInvalid rather than a guess."""
    from hms_dr.wal.expiry import BaseBackupWal, wal_position

    start = (backup_set.manifest.body.get("base_backup") or {}).get("start_wal_file")
    if not isinstance(start, str) or wal_position(start) is None:
        raise ManifestInvalid(
            f"base backup manifest {backup_set.manifest_key} lacks its WAL start: retention refuses to guess what it needs"
        )
    return BaseBackupWal(backup_set.backup_set_id, start)


def read_store_catalog(store: Store, cluster: str, kinds: Iterable[BackupKind]) -> StoreCatalog:
    """One listing per kind that planning ``kinds`` needs (WAL needs the base backups, the exports
    their daily sets); only non-WAL manifests are read."""
    needed = set(kinds)
    if BackupKind.WAL in needed:
        needed.add(BackupKind.BASE)
    if needed & set(DAILY_EXPORT_KINDS):
        needed.add(BackupKind.LOGICAL)
    listings: dict[BackupKind, CatalogListing] = {kind: list_catalog(store, cluster, kind) for kind in BackupKind if kind in needed and kind is not BackupKind.WAL}
    wal_sets = tuple(read_wal_sets(store, cluster)) if BackupKind.WAL in needed else ()
    return StoreCatalog(listings=listings, wal_sets=wal_sets)


def expire_by_tiers(
    store: Store, cluster: str, tiers: RetentionTiers, now: datetime, *, offsite: bool, kinds: Sequence[BackupKind]
) -> dict[str, Any]:
    """Plan every tier of ``store`` and apply the plans of ``kinds`` (dependents before what they
    depend on: WAL is planned from the kept base backups, so it goes first); per kind what was
    kept, expired, deleted and left because Object Lock still holds it."""
    plans = plan_store_retention(read_store_catalog(store, cluster, kinds), tiers, now, offsite=offsite)
    report: dict[str, Any] = {}
    failures: list[str] = []
    for kind in sorted(kinds, key=lambda k: k is not BackupKind.WAL):
        plan = plans[kind]
        try:
            outcome = apply_retention_plan(plan, store, cluster, now=now)
        except RetentionRefused as exc:
            failures.append(f"{kind.value}: {exc.message}")
            continue
        kept_by_reason = Counter(_reason_kind(plan.reasons[set_id]) for set_id in plan.keep)
        log.info(
            "%s retention of %s sets in %s: %d kept (%s), %d expired (%d objects deleted), %d left under Object Lock",
            "offsite" if offsite else "primary", kind.value, store.url, len(plan.keep),
            "; ".join(f"{count}: {reason}" for reason, count in kept_by_reason.items()) or "none",
            len(plan.expire), len(outcome.deleted), len(outcome.locked),
        )
        report[kind.value] = {
            "kept": len(plan.keep),
            "expired": [e.backup_set_id for e in plan.expire if e.backup_set_id not in outcome.locked],
            "deleted_objects": len(outcome.deleted),
            "locked": dict(outcome.locked),
        }
    if failures:
        raise RetentionRefused(f"retention failed for {len(failures)} kind(s); first: {failures[0]}")
    return report


def _reason_kind(reason: str) -> str:
    """A keep reason without its per-set figures ("(3 days old)"), so that reasons can be counted."""
    return reason.split(" (", 1)[0]
