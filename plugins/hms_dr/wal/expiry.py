"""WAL expiry: which stored WAL sets may go, decided by a pure planner.

The runbook keeps WAL for 7 days, and a WAL file that a retained base backup needs is never
expired. A base backup needs every WAL file from its start on: that is what makes it
restorable at all (start to stop) and what lets a point-in-time recovery starting from it reach
any later moment. So everything from the start of the OLDEST retained base backup on is kept,
whatever its age; before it, WAL goes once it is older than ``keep_days``. Base backup
retention (keep N) therefore decides how far back point-in-time recovery reaches, as in
pgBackRest's default.

With no base backup in the store nothing expires: the expiry cannot tell what a future restore
will need, and a warning says so. ``.history`` files are never expired: they are tiny and a
restore that follows a timeline switch cannot do without them.

WAL positions are compared without the timeline (the last 16 hex digits of a segment name), so a
segment of any timeline at or after the oldest base backup's start is kept: the cheap, safe side.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from hms_dr.catalog import list_catalog
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind
from hms_dr.retention import Expiry, RetentionPlan, apply_retention, describe_age
from hms_dr.wal.listing import StoredWalSet, read_wal_sets
from hms_dr.wal.names import WalFileKind, parse_wal_name

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseBackupWal:
    """Where the WAL of one retained base backup starts, as its manifest records it."""

    backup_set_id: str
    start_wal_file: str


def wal_position(name: str) -> str | None:
    """The timeline-free position of a segment, .backup or .partial name; None for .history files."""
    parsed = parse_wal_name(name)
    if parsed is None or parsed.kind is WalFileKind.HISTORY:
        return None
    return name[8:24]


def plan_wal_expiry(
    wal_sets: Iterable[StoredWalSet],
    base_backups: Sequence[BaseBackupWal],
    *,
    keep_days: int,
    orphan_max_age: timedelta,
    now: datetime,
) -> RetentionPlan:
    """Decide which WAL sets expire; every kept set has its reason too."""
    window_opens = now - timedelta(days=keep_days)
    oldest = oldest_base_backup(base_backups)
    keep: list[str] = []
    expire: list[Expiry] = []
    reasons: dict[str, str] = {}

    def kept(name: str, reason: str) -> None:
        keep.append(name)
        reasons[name] = reason

    for wal_set in sorted(wal_sets, key=lambda s: s.name):
        name = wal_set.name
        position = wal_position(name)
        if not wal_set.complete:
            if now - wal_set.modified_at > orphan_max_age:
                reason = f"payload without a manifest, last written {describe_age(now - wal_set.modified_at)} ago (interrupted shipping)"
                expire.append(Expiry(BackupKind.WAL, name, False, reason))
                reasons[name] = reason
            continue
        if position is None:
            kept(name, "timeline history files are always kept")
        elif wal_set.modified_at > window_opens:
            kept(name, f"inside the {keep_days}-day window")
        elif oldest is None:
            kept(name, "no base backup in the store: nothing can tell which WAL a restore needs")
        elif position >= _position(oldest.start_wal_file):
            kept(name, f"needed by the retained base backups (from {oldest.backup_set_id} on)")
        else:
            reason = f"older than the {keep_days}-day window and before the oldest retained base backup"
            expire.append(Expiry(BackupKind.WAL, name, True, reason))
            reasons[name] = reason
    return RetentionPlan(keep=tuple(keep), expire=tuple(expire), reasons=reasons)


def oldest_base_backup(base_backups: Sequence[BaseBackupWal]) -> BaseBackupWal | None:
    """The retained base backup whose WAL starts first: every WAL file from there on is needed."""
    if not base_backups:
        return None
    return min(base_backups, key=lambda b: (_position(b.start_wal_file), b.backup_set_id))


def _position(name: str) -> str:
    position = wal_position(name)
    if position is None:
        raise ValueError(f"{name!r} is not a WAL segment name")
    return position



def read_base_backup_wal(store: Store, cluster: str) -> list[BaseBackupWal]:
    """Where the WAL of every complete base backup set in the store starts (unreadable manifests
    are skipped by the catalog and reported there)."""
    ranges = []
    for backup_set in list_catalog(store, cluster, BackupKind.BASE).sets:
        base = backup_set.manifest.body.get("base_backup") or {}
        try:
            start_wal_file = str(base["start_wal_file"])
            _position(start_wal_file)
            ranges.append(BaseBackupWal(backup_set.backup_set_id, start_wal_file))
        except (KeyError, ValueError) as exc:
            raise ManifestInvalid(
                f"base backup manifest {store.describe(backup_set.manifest_key)} lacks its WAL start ({exc}): "
                "WAL expiry refuses to guess what it needs"
            ) from exc
    return ranges


def expire_wal(store: Store, cluster: str, *, keep_days: int, orphan_max_age: timedelta, now: datetime) -> dict[str, Any]:
    """Plan and apply WAL expiry; what was kept (counted by reason) and what was deleted."""
    base_backups = read_base_backup_wal(store, cluster)
    wal_sets = read_wal_sets(store, cluster)
    plan = plan_wal_expiry(wal_sets, base_backups, keep_days=keep_days, orphan_max_age=orphan_max_age, now=now)
    if not base_backups and wal_sets:
        log.warning("no base backup in the store: no WAL is expired until the first one exists")
    deleted = apply_retention(plan, store, cluster)
    kept_by_reason = Counter(plan.reasons[name] for name in plan.keep)
    log.info(
        "WAL expiry: %d set(s) kept, %d expired (%d objects deleted); kept: %s", len(plan.keep), len(plan.expire),
        len(deleted), "; ".join(f"{count} {reason}" for reason, count in kept_by_reason.items()) or "none",
    )
    return {
        "kept": len(plan.keep),
        "expired": [e.backup_set_id for e in plan.expire],
        "deleted_objects": len(deleted),
        "base_backups": [b.backup_set_id for b in base_backups],
        "kept_by_reason": dict(kept_by_reason),
    }
