"""Retention planning, pure: which sets and leftovers of a store to delete, and why.

``plan_retention`` takes a catalog listing, a rule and an explicit ``now`` and returns a plan
that carries its reasons; it reads no clock, store or database, so its safety rules are tested
directly. ``plan_store_retention`` plans every tier of one store at once (daily sets with their
exports, base backups and the WAL they need (``retention.wal``), restore-test reports; or the
offsite store's window). Base backups are counted in full backups and kept or expired a chain at
a time (``plan_base_backup_retention``): an incremental cannot be restored without every older
link of its chain (``hms_dr.physical.chain``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hms_dr.catalog import BackupSet, CatalogListing
from hms_dr.errors import BackupChainBroken, ManifestInvalid
from hms_dr.manifest import BackupKind, parse_backup_set_id
from hms_dr.physical.chain import ChainLink, ancestors_of, chain_link_of, deletion_order, resolve_chain
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
    never a weekly/monthly keep, never a ``pinned`` set (set id -> why it must stay). Base
    backups follow the same rule counted in full backups, chains kept whole
    (:func:`plan_base_backup_retention`)."""
    if kind is BackupKind.BASE:
        return plan_base_backup_retention(listing, rule, now, pinned=pinned)
    sets = sorted(listing.sets, key=lambda s: (s.finished_at, s.backup_set_id))
    kept, expired = _decide_by_rule(sets, rule, now, pinned, noun="complete set(s)")
    keep = [s.backup_set_id for s in sets if s.backup_set_id in kept]
    expire = [Expiry(kind, s.backup_set_id, True, expired[s.backup_set_id]) for s in sets if s.backup_set_id in expired]
    reasons = {**kept, **expired}
    expire += _expired_orphans(listing, kind, rule, now, reasons)
    return RetentionPlan(keep=tuple(keep), expire=tuple(expire), reasons=reasons, unreadable=listing.unreadable)


def _decide_by_rule(
    sets: Sequence[BackupSet], rule: RetentionRule, now: datetime, pinned: Mapping[str, str] | None, *, noun: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The rule applied to ``sets`` (oldest first): set id -> why it is kept, set id -> why it expires."""
    protected = {s.backup_set_id for s in sets[-rule.min_keep :]}
    long_term = {**grandfather_father_son_keeps(sets, rule), **(pinned or {})}
    kept: dict[str, str] = {}
    expired: dict[str, str] = {}
    for backup_set in sets:
        set_id = backup_set.backup_set_id
        age = now - backup_set.finished_at
        if set_id in protected:
            kept[set_id] = f"among the newest {rule.min_keep} {noun}"
        elif set_id in long_term:
            kept[set_id] = long_term[set_id]
        elif rule.max_age is not None and age <= rule.max_age:
            kept[set_id] = f"inside the {describe_age(rule.max_age)} window ({describe_age(age)} old)"
        else:
            expired[set_id] = (
                f"older than the {describe_age(rule.max_age)} window ({describe_age(age)} old)"
                if rule.max_age is not None
                else f"not among the newest {rule.min_keep} {noun} ({describe_age(age)} old)"
            )
    return kept, expired


def _expired_orphans(
    listing: CatalogListing, kind: BackupKind, rule: RetentionRule, now: datetime, reasons: dict[str, str]
) -> list[Expiry]:
    """Folders without a manifest, past ``orphan_max_age``; their reasons are added to ``reasons``."""
    complete_ids = {s.backup_set_id for s in listing.sets}
    expire: list[Expiry] = []
    for orphan in listing.orphans:
        if orphan.backup_set_id in complete_ids:
            continue
        age = now - orphan.newest_modified_at
        if age > rule.orphan_max_age:
            reason = f"payloads without a manifest, last written {describe_age(age)} ago (interrupted run)"
            expire.append(Expiry(kind, orphan.backup_set_id, False, reason))
            reasons[orphan.backup_set_id] = reason
    return expire


# -- base backups: chains kept whole -----------------------------------------------------------


def plan_base_backup_retention(
    listing: CatalogListing, rule: RetentionRule, now: datetime, *, pinned: Mapping[str, str] | None = None
) -> RetentionPlan:
    """Base backups, whose incrementals cannot be restored without every older link of their
    chain (``hms_dr.physical.chain``). The rule (keep N, a window, weekly/monthly keeps) counts
    FULL backups: a chain is kept or expired whole, with its full backup.

    - An incremental whose chain is whole is kept exactly when its full backup is kept.
    - Every link (ancestor) of a kept set is kept, whatever the rule says of it.
    - An incremental whose chain is broken (a link missing from the store, of another cluster,
      disagreeing) can never be restored: it is kept unless it is older than the oldest full
      backup the rule keeps; then it expires, its reason naming the fault.
    - Nothing expires because of a manifest that cannot be read: a set whose chain fields do not
      read is kept, and so is every older set (any of them may be a link of its chain); the same
      for a manifest that does not parse at all (``listing.unreadable``), whose set may be an
      incremental on any older set; and an incremental whose missing link is such a set is kept.

    Expiring sets are listed in the order to delete them: each after every set that depends on
    it, otherwise newest first, so an expiry interrupted anywhere leaves shorter chains that are
    still whole, never an incremental without its parent (``retention.apply`` deletes in order
    and holds back the links of a set it could not delete).
    """
    kind = BackupKind.BASE
    pins = pinned or {}
    sets = sorted(listing.sets, key=lambda s: (s.finished_at, s.backup_set_id))
    by_id = {s.backup_set_id: s for s in sets}
    links: dict[str, ChainLink] = {}
    kept: dict[str, str] = {}
    expired: dict[str, str] = {}
    unreadable_ids = {_set_id_of_manifest_key(key) for key in listing.unreadable}
    unknown_chains: list[tuple[datetime | None, str]] = []  # sets whose ancestors cannot be told: (start, why)
    # Which sets are links of which chains; a set that does not say cannot be placed in any.
    for backup_set in sets:
        try:
            links[backup_set.backup_set_id] = chain_link_of(backup_set)
        except ManifestInvalid as exc:
            kept[backup_set.backup_set_id] = f"its chain fields cannot be read, so it is never expired ({exc.message})"
            unknown_chains.append((backup_set.manifest.started_at, f"set {backup_set.backup_set_id}"))
    for key in listing.unreadable:
        unknown_chains.append((_set_start(_set_id_of_manifest_key(key)), f"set {_set_id_of_manifest_key(key)}"))

    # The rule counts full backups only: an incremental is a day's changes, not a restore point of its own.
    fulls = [by_id[set_id] for set_id, link in links.items() if not link.is_incremental]
    fulls.sort(key=lambda s: (s.finished_at, s.backup_set_id))
    kept_fulls, expired_fulls = _decide_by_rule(fulls, rule, now, pins, noun="full base backup(s)")
    kept.update(kept_fulls)
    expired.update(expired_fulls)
    oldest_kept_full = min((by_id[set_id] for set_id in kept_fulls), key=lambda s: s.finished_at, default=None)

    whole: dict[str, str] = {}  # incremental -> its full backup, for incrementals whose chain is whole
    for set_id, link in links.items():
        if not link.is_incremental:
            continue
        backup_set = by_id[set_id]
        try:
            whole[set_id] = resolve_chain(backup_set, by_id).full.backup_set_id
        except BackupChainBroken as exc:
            missing = exc.missing_backup_set_id
            if missing is not None and missing in unreadable_ids:
                kept[set_id] = f"a link of its chain has a manifest that cannot be read ({missing})"
            elif oldest_kept_full is None or backup_set.finished_at >= oldest_kept_full.finished_at:
                kept[set_id] = (
                    f"its chain is broken, but it is not older than the oldest kept full backup ({exc.message})"
                )
            else:
                expired[set_id] = (
                    f"its chain is broken and it is older than the oldest kept full backup "
                    f"{oldest_kept_full.backup_set_id} ({exc.message})"
                )
        except ManifestInvalid as exc:
            kept[set_id] = f"a link of its chain has chain fields that cannot be read ({exc.message})"
        if set_id in pins:
            expired.pop(set_id, None)
            kept[set_id] = pins[set_id]

    # A set whose chain cannot be read may need any set older than it: none of those expires.
    for start, whose in unknown_chains:
        for backup_set in sets:
            set_id = backup_set.backup_set_id
            if set_id not in kept and (start is None or backup_set.finished_at <= start):
                expired.pop(set_id, None)
                kept[set_id] = f"may be a link of the chain of a set whose chain cannot be read ({whose})"
    _keep_links_of_kept_sets(links, kept, expired)
    # Whole chains go with their full backup, which may by now be kept as a link of another set.
    for set_id, full_id in whole.items():
        if set_id in kept:
            continue
        if full_id in kept:
            kept[set_id] = f"in the chain of a kept full backup ({full_id}: {kept[full_id]})"
        else:
            expired.pop(set_id, None)
            expired[set_id] = f"in the chain of an expiring full backup ({full_id}: {expired[full_id]})"
    _keep_links_of_kept_sets(links, kept, expired)

    keep = [s.backup_set_id for s in sets if s.backup_set_id in kept]
    expire = [
        Expiry(kind, link.backup_set_id, True, expired[link.backup_set_id], needs=ancestors_of(link, links))
        for link in deletion_order(links[set_id] for set_id in expired)
    ]
    reasons = {**expired, **kept}
    expire += _expired_orphans(listing, kind, rule, now, reasons)
    unreadable = (*listing.unreadable, *(s.manifest_key for s in sets if s.backup_set_id not in links))
    return RetentionPlan(keep=tuple(keep), expire=tuple(expire), reasons=reasons, unreadable=unreadable)


def _keep_links_of_kept_sets(links: Mapping[str, ChainLink], kept: dict[str, str], expired: dict[str, str]) -> None:
    """Keep every link (ancestor) the store holds of a kept set, whether it was to expire or not
    decided yet, saying whose link it is."""
    pending = [set_id for set_id in kept if set_id in links]
    while pending:
        set_id = pending.pop()
        for ancestor in ancestors_of(links[set_id], links):
            if ancestor in links and ancestor not in kept:
                expired.pop(ancestor, None)
                kept[ancestor] = f"a link of the chain of a kept set ({set_id})"
                pending.append(ancestor)


def _set_id_of_manifest_key(manifest_key: str) -> str:
    """<cluster>/<kind>/<backup_set_id>/manifest.json -> backup_set_id."""
    parts = manifest_key.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else manifest_key


def _set_start(backup_set_id: str) -> datetime | None:
    """When a set started, read from its id; None when the id is not a timestamp (then nothing
    is known of its age, and every set is taken as possibly older)."""
    try:
        return parse_backup_set_id(backup_set_id)
    except ManifestInvalid:
        return None


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
