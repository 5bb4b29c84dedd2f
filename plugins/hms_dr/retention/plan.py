"""Retention planning, pure: which sets and leftovers of a store to delete, and why.

``plan_retention`` takes a catalog listing, a rule and an explicit ``now`` and returns a plan
that carries its reasons; it reads no clock, store or database, so its safety rules are tested
directly. ``plan_store_retention`` plans every tier of one store at once (daily sets with their
exports, base backups and the WAL they need (``retention.wal``), restore-test reports; or the
offsite store's window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hms_dr.catalog import BackupSet, CatalogListing
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind
from hms_dr.retention.records import Expiry, RetentionPlan, RetentionRule, describe_age
from hms_dr.retention.wal import BaseBackupWal, plan_wal_expiry, wal_position
from hms_dr.wal.listing import StoredWalSet


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
    protected = {s.backup_set_id for s in sets[-rule.min_keep :]}
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
                f"older than the {describe_age(rule.max_age)} window ({describe_age(age)} old)"
                if rule.max_age is not None
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
        (rule.weekly_keep, "weekly", lambda at: "{:04d}-W{:02d}".format(*at.isocalendar())),
        (rule.monthly_keep, "monthly", lambda at: f"{at.year:04d}-{at.month:02d}"),
    )
    for count, label, period_of in periods:
        if count < 1:
            continue
        newest_in: dict[str, str] = {}
        for backup_set in sorted(sets, key=lambda s: (s.finished_at, s.backup_set_id)):
            newest_in[period_of(backup_set.finished_at.astimezone(UTC))] = backup_set.backup_set_id
        for period in sorted(newest_in, reverse=True)[:count]:
            keeps.setdefault(newest_in[period], f"{label} keep (grandfather-father-son) for {period}")
    return keeps


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
    plans: dict[BackupKind, RetentionPlan] = {}
    daily = plan_retention(
        catalog.listing(BackupKind.LOGICAL),
        BackupKind.LOGICAL,
        tiers.rule_for(BackupKind.LOGICAL, offsite=offsite),
        now,
    )
    plans[BackupKind.LOGICAL] = daily
    with_daily_set = {set_id: f"kept with its daily set ({daily.reasons[set_id]})" for set_id in daily.keep}
    for kind in DAILY_EXPORT_KINDS:
        plans[kind] = plan_retention(
            catalog.listing(kind), kind, tiers.rule_for(kind, offsite=offsite), now, pinned=with_daily_set
        )
    for kind in (BackupKind.BASE, BackupKind.RESTORE_TEST):
        plans[kind] = plan_retention(catalog.listing(kind), kind, tiers.rule_for(kind, offsite=offsite), now)
    kept_bases = set(plans[BackupKind.BASE].keep)
    base_wal = [
        base_backup_wal_start(s) for s in catalog.listing(BackupKind.BASE).sets if s.backup_set_id in kept_bases
    ]
    wal_plan = plan_wal_expiry(
        catalog.wal_sets,
        base_wal,
        keep_days=tiers.offsite_days if offsite else tiers.wal_days,
        orphan_max_age=tiers.orphan_max_age,
        now=now,
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
    start = (backup_set.manifest.body.get("base_backup") or {}).get("start_wal_file")
    if not isinstance(start, str) or wal_position(start) is None:
        raise ManifestInvalid(
            f"base backup manifest {backup_set.manifest_key} lacks its WAL start: retention refuses to guess what it needs"
        )
    return BaseBackupWal(backup_set.backup_set_id, start)
