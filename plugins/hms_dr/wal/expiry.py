"""WAL expiry: which stored WAL sets may go, decided by a pure planner.

The runbook keeps WAL for 7 days, and a WAL file that a retained base backup needs is never
expired. "Needs" here means two things:

- every retained base backup must stay restorable to consistency, so the WAL from its start to
  its stop segment is kept whatever its age;
- point-in-time recovery must reach any moment of the last ``keep_days``; replay starts at a base
  backup, so every WAL file from the start of the *anchor* on is kept. The anchor is the newest
  retained base backup that had finished before the window opened (it covers the window's first
  moment); when none had, it is the oldest retained base backup.

With no base backup in the store nothing expires: the expiry cannot tell what a future restore
will need, and a warning says so. ``.history`` files are never expired: they are tiny and a
restore that follows a timeline switch cannot do without them.

WAL positions are compared without the timeline (the last 16 hex digits of a segment name), so a
segment of any timeline at or after the anchor is kept: the cheap, safe side.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from hms_dr.catalog import list_catalog
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.retention import Expiry, RetentionPlan, apply_retention, describe_age
from hms_dr.wal.listing import StoredWalSet, read_wal_sets
from hms_dr.wal.names import WalFileKind, parse_wal_name

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseBackupWal:
    """The WAL range of one retained base backup, as its manifest records it."""

    backup_set_id: str
    start_wal_file: str
    stop_wal_file: str
    stop_time: datetime


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
    anchor = choose_anchor(base_backups, window_opens)
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
        elif anchor is None:
            kept(name, "no base backup in the store: nothing can tell which WAL a restore needs")
        elif position >= _position(anchor.start_wal_file):
            kept(name, f"needed for point-in-time recovery from base backup {anchor.backup_set_id}")
        elif (needed_by := _base_backup_needing(position, base_backups)) is not None:
            kept(name, f"needed to make base backup {needed_by} consistent")
        else:
            reason = f"older than the {keep_days}-day window and before every retained base backup's WAL"
            expire.append(Expiry(BackupKind.WAL, name, True, reason))
            reasons[name] = reason
    return RetentionPlan(keep=tuple(keep), expire=tuple(expire), reasons=reasons)


def choose_anchor(base_backups: Sequence[BaseBackupWal], window_opens: datetime) -> BaseBackupWal | None:
    """The base backup point-in-time recovery of the window's oldest moment starts from."""
    if not base_backups:
        return None
    by_stop = sorted(base_backups, key=lambda b: (b.stop_time, b.backup_set_id))
    finished_before = [b for b in by_stop if b.stop_time <= window_opens]
    return finished_before[-1] if finished_before else by_stop[0]


def _base_backup_needing(position: str, base_backups: Sequence[BaseBackupWal]) -> str | None:
    for base in base_backups:
        if _position(base.start_wal_file) <= position <= _position(base.stop_wal_file):
            return base.backup_set_id
    return None


def _position(name: str) -> str:
    position = wal_position(name)
    if position is None:
        raise ValueError(f"{name!r} is not a WAL segment name")
    return position



def read_base_backup_wal(store: Store, cluster: str) -> list[BaseBackupWal]:
    """The WAL range of every complete base backup set in the store (unreadable ones are skipped
    by the catalog and reported there)."""
    ranges = []
    for backup_set in list_catalog(store, cluster, BackupKind.BASE).sets:
        base = backup_set.manifest.body.get("base_backup") or {}
        try:
            ranges.append(BaseBackupWal(
                backup_set.backup_set_id, str(base["start_wal_file"]), str(base["stop_wal_file"]),
                parse_utc(base["stop_time"]),
            ))
        except (KeyError, ValueError) as exc:
            raise ManifestInvalid(
                f"base backup manifest {store.describe(backup_set.manifest_key)} lacks its WAL range ({exc}): "
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
