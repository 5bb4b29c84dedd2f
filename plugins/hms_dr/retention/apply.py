"""Retention applied to a store: a short loop over a plan, manifest first, payloads after, so a
crash part-way leaves an orphan (cleaned up next time), never a set that looks complete; a set
still under Object Lock is left whole and reported. ``expire_by_tiers`` reads what a store holds,
plans every tier (``retention.plan``) and applies the plans.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hms_dr.catalog import CatalogListing, key_for, list_catalog
from hms_dr.errors import HmsDrError, ObjectLocked, ObjectMissing, RetentionRefused
from hms_dr.manifest import MANIFEST_NAME, BackupKind
from hms_dr.retention.plan import DAILY_EXPORT_KINDS, RetentionTiers, StoreCatalog, plan_store_retention
from hms_dr.retention.records import Expiry, KindExpiry, RetentionPlan
from hms_dr.wal.listing import read_wal_sets

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionOutcome:
    """What applying a plan did: the keys deleted in order, and the sets Object Lock still holds."""

    deleted: tuple[str, ...]
    locked: Mapping[str, str] = field(default_factory=dict)  # set id -> which objects are locked, until when
    # Set id -> why it stays though the plan expires it: a link of the chain of a set that could
    # not be deleted (locked, or a failure), which would otherwise lose its parent.
    held: Mapping[str, str] = field(default_factory=dict)


def apply_retention(plan: RetentionPlan, store: Store, cluster: str) -> list[str]:
    """Delete what the plan expires, manifest first; the keys deleted, in order. Finishes the
    loop on errors and raises one summary error at the end; a set under Object Lock is logged and kept."""
    return list(apply_retention_plan(plan, store, cluster, now=datetime.now(UTC)).deleted)


def apply_retention_plan(plan: RetentionPlan, store: Store, cluster: str, *, now: datetime) -> RetentionOutcome:
    """As :func:`apply_retention`; in a store with Object Lock every object of an expiring set is
    checked first and a set with any locked object is left whole and reported, never half deleted.

    Sets are deleted in the plan's order, which puts an incremental base backup before every link
    of its chain (``plan_base_backup_retention``): a run interrupted anywhere leaves chains that
    are shorter but whole. A set that stays (locked, or its deletion failed) holds back the links
    it ``needs`` too, so no incremental is ever left without its parent."""
    deleted: list[str] = []
    locked: dict[str, str] = {}
    held: dict[str, str] = {}
    failures: list[str] = []

    def hold_links_of(expiry: Expiry, why: str) -> None:
        for needed in expiry.needs:
            held.setdefault(needed, f"a link of the chain of {expiry.backup_set_id}, which {why}")

    for expiry in plan.expire:
        if expiry.backup_set_id in held:
            log.warning(
                "kept %s set %s: %s (it expires: %s)",
                expiry.kind.value,
                expiry.backup_set_id,
                held[expiry.backup_set_id],
                expiry.reason,
            )
            hold_links_of(expiry, "stays too")
            continue
        folder = key_for(cluster, expiry.kind, expiry.backup_set_id)
        manifest_key = folder + MANIFEST_NAME
        try:
            keys = [obj.key for obj in store.list(folder)]
            lock = _lock_of(store, keys, now) if store.features.supports_object_lock else None
            if lock is not None:
                locked[expiry.backup_set_id] = lock
                hold_links_of(expiry, "Object Lock holds")
                log.warning(
                    "kept %s set %s: %s (it expires: %s)", expiry.kind.value, expiry.backup_set_id, lock, expiry.reason
                )
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
            log.info(
                "expired %s set %s (%d objects): %s", expiry.kind.value, expiry.backup_set_id, len(keys), expiry.reason
            )
        except ObjectLocked as exc:
            # The lock check above saw none (a listing race, or a lock the head did not show).
            locked[expiry.backup_set_id] = exc.message
            hold_links_of(expiry, "Object Lock holds")
            log.warning("%s", exc.message)
        except HmsDrError as exc:
            failures.append(f"{store.describe(folder)}: {exc.message}")
            hold_links_of(expiry, "could not be deleted")
    for key in plan.unreadable:
        log.warning("retention left %s alone: its manifest cannot be read", store.describe(key))
    if failures:
        raise RetentionRefused(f"{len(failures)} expiry(ies) failed; first: {failures[0]}")
    return RetentionOutcome(deleted=tuple(deleted), locked=locked, held=held)


def _lock_of(store: Store, keys: Iterable[str], now: datetime) -> str | None:
    """Why Object Lock forbids deleting these objects now, or None when nothing is locked."""
    held = [obj for obj in (store.stat(key) for key in keys) if obj.locked_at(now)]
    if not held:
        return None
    if any(obj.legal_hold for obj in held):
        return f"{len(held)} object(s) under Object Lock, a legal hold among them"
    until = max(obj.retained_until for obj in held if obj.retained_until is not None)
    return f"{len(held)} object(s) under Object Lock until {until:%Y-%m-%d %H:%M} UTC"


def read_store_catalog(store: Store, cluster: str, kinds: Iterable[BackupKind]) -> StoreCatalog:
    """One listing per kind that planning ``kinds`` needs (WAL needs the base backups, the exports
    their daily sets); only non-WAL manifests are read."""
    needed = set(kinds)
    if BackupKind.WAL in needed:
        needed.add(BackupKind.BASE)
    if needed & set(DAILY_EXPORT_KINDS):
        needed.add(BackupKind.LOGICAL)
    listings: dict[BackupKind, CatalogListing] = {
        kind: list_catalog(store, cluster, kind) for kind in BackupKind if kind in needed and kind is not BackupKind.WAL
    }
    wal_sets = tuple(read_wal_sets(store, cluster)) if BackupKind.WAL in needed else ()
    return StoreCatalog(listings=listings, wal_sets=wal_sets)


def expire_by_tiers(
    store: Store, cluster: str, tiers: RetentionTiers, now: datetime, *, offsite: bool, kinds: Sequence[BackupKind]
) -> dict[str, KindExpiry]:
    """Plan every tier of ``store`` and apply the plans of ``kinds`` (dependents before what they
    depend on: WAL is planned from the kept base backups, so it goes first); per kind what was
    kept, expired, deleted and left because Object Lock still holds it."""
    plans = plan_store_retention(read_store_catalog(store, cluster, kinds), tiers, now, offsite=offsite)
    report: dict[str, KindExpiry] = {}
    failures: list[str] = []
    for kind in sorted(kinds, key=lambda k: k is not BackupKind.WAL):
        plan = plans[kind]
        try:
            outcome = apply_retention_plan(plan, store, cluster, now=now)
        except RetentionRefused as exc:
            failures.append(f"{kind.value}: {exc.message}")
            continue
        kept_by_reason = Counter(_reason_kind(plan.reasons[set_id]) for set_id in plan.keep)
        # A set held back as a link of a locked set's chain is reported with the locked sets.
        stayed = {**outcome.held, **outcome.locked}
        log.info(
            "%s retention of %s sets in %s: %d kept (%s), %d expired (%d objects deleted), %d left under Object Lock (or as links of a locked set)",
            "offsite" if offsite else "primary",
            kind.value,
            store.url,
            len(plan.keep),
            "; ".join(f"{count}: {reason}" for reason, count in kept_by_reason.items()) or "none",
            len(plan.expire),
            len(outcome.deleted),
            len(stayed),
        )
        report[kind.value] = KindExpiry(
            kept=len(plan.keep),
            expired=[e.backup_set_id for e in plan.expire if e.backup_set_id not in stayed],
            deleted_objects=len(outcome.deleted),
            locked=stayed,
        )
    if failures:
        raise RetentionRefused(f"retention failed for {len(failures)} kind(s); first: {failures[0]}")
    return report


def _reason_kind(reason: str) -> str:
    """A keep reason without its per-set figures ("(3 days old)"), so that reasons can be counted."""
    return reason.split(" (", 1)[0]
