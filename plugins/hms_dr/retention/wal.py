"""WAL expiry: which stored WAL sets may go, decided by a pure planner.

The runbook keeps WAL for 7 days, and a WAL file that a retained base backup needs is never
expired. A base backup needs every WAL file from its start on: that is what makes it
restorable at all (start to stop) and what lets a point-in-time recovery starting from it reach
any later moment. So everything from the start of the OLDEST retained base backup on is kept,
whatever its age; before it, WAL goes once it is older than ``keep_days``. Base backup
retention (keep N) therefore decides how far back point-in-time recovery reaches, as in
pgBackRest's default. With incremental base backups nothing changes here: base retention keeps
every link of a kept incremental's chain, so the oldest kept set is a full backup (or, with a
broken chain, whatever set is oldest), and its WAL start is the one that counts; an
incremental's own restore needs WAL only from its own start, which is later.

With no base backup in the store nothing expires: the expiry cannot tell what a future restore
will need, and a warning says so. ``.history`` files are never expired: they are tiny and a
restore that follows a timeline switch cannot do without them.

WAL positions are compared without the timeline (the last 16 hex digits of a segment name), so a
segment of any timeline at or after the oldest base backup's start is kept: the cheap, safe side.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hms_dr.manifest import BackupKind
from hms_dr.retention.records import Expiry, RetentionPlan, describe_age
from hms_dr.wal.listing import StoredWalSet
from hms_dr.wal.names import wal_position

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseBackupWal:
    """Where the WAL of one retained base backup starts, as its manifest records it."""

    backup_set_id: str
    start_wal_file: str


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
        elif wal_set.modified_at >= window_opens:
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
