"""Retention's records: the rule a tier follows, and the plan a planner returns (what stays,
what goes and why). Plain data, shared by the planners (``plan``, ``wal``) and the applier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hms_dr.errors import RetentionRefused
from hms_dr.manifest import BackupKind
from hms_dr.records import Record


@dataclass(frozen=True)
class KindExpiry(Record):
    """What retention did to one kind of a store (a retention task's XCom, per kind)."""

    kept: int
    expired: list[str]  # set ids deleted (not those Object Lock still holds)
    deleted_objects: int
    locked: dict[str, str]  # set id -> which objects are locked, until when


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
    # The sets this one's restore needs (an incremental base backup's chain): when this set
    # cannot be deleted (Object Lock, a failure), retention.apply leaves these in place too.
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetentionPlan:
    keep: tuple[str, ...]
    expire: tuple[Expiry, ...]
    reasons: dict[str, str]  # backup_set_id -> why it is kept or expired
    unreadable: tuple[str, ...] = ()


def describe_age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.1f} hours"
