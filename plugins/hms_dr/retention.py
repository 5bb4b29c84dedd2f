"""Retention: which backup sets and leftovers to delete, decided by a pure planner.

``plan_retention`` takes a catalog listing, a rule and an explicit ``now`` and returns a plan
that carries its reasons; it reads no clock, store or database, so its safety rules are tested
directly. ``apply_retention`` is a short loop over the plan: manifest first, payloads after, so
a crash part-way leaves an orphan (cleaned up next time), never a set that looks complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hms_dr.catalog import CatalogListing, key_for
from hms_dr.errors import HmsDrError, ObjectMissing, RetentionRefused
from hms_dr.manifest import MANIFEST_NAME, BackupKind

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionRule:
    max_age: timedelta | None  # complete sets older than this expire (None: no window, count only)...
    orphan_max_age: timedelta  # ...payloads without a manifest after this long
    min_keep: int = 1  # ...but never the newest min_keep complete sets

    def __post_init__(self) -> None:
        if self.min_keep < 1:
            raise RetentionRefused("retention must always keep at least the newest complete set")

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


def plan_retention(listing: CatalogListing, kind: BackupKind, rule: RetentionRule, now: datetime) -> RetentionPlan:
    """Decide what expires. Never the newest ``min_keep`` sets, never a set inside its window."""
    sets = sorted(listing.sets, key=lambda s: (s.finished_at, s.backup_set_id))
    protected = {s.backup_set_id for s in sets[-rule.min_keep:]}
    keep: list[str] = []
    expire: list[Expiry] = []
    reasons: dict[str, str] = {}
    for backup_set in sets:
        set_id = backup_set.backup_set_id
        age = now - backup_set.finished_at
        if set_id in protected:
            keep.append(set_id)
            reasons[set_id] = f"among the newest {rule.min_keep} complete set(s)"
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


def apply_retention(plan: RetentionPlan, store: Store, cluster: str) -> list[str]:
    """Delete what the plan expires, manifest first; the keys deleted, in order. Finishes the
    loop on errors and raises one summary error at the end."""
    deleted: list[str] = []
    failures: list[str] = []
    for expiry in plan.expire:
        folder = key_for(cluster, expiry.kind, expiry.backup_set_id)
        manifest_key = folder + MANIFEST_NAME
        try:
            keys = [obj.key for obj in store.list(folder)]
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
            log.info("expired %s set %s: %s", expiry.kind.value, expiry.backup_set_id, expiry.reason)
        except HmsDrError as exc:
            failures.append(f"{store.describe(folder)}: {exc.message}")
    for key in plan.unreadable:
        log.warning("retention left %s alone: its manifest cannot be read", store.describe(key))
    if failures:
        raise RetentionRefused(f"{len(failures)} expiry(ies) failed; first: {failures[0]}")
    return deleted


def describe_age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.1f} hours"
