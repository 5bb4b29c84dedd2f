"""Freshness: whether the newest complete set of each kind is as recent as the policy allows.

A backup can stop without any run failing: the DAG is paused, its schedule is broken, the
scheduler is down. Only the catalog tells: this module reads the newest complete set of each
kind (one listing per kind; WAL from its listing and the newest few manifests, never its
thousands of manifests) and
``judge_freshness`` decides, purely, which kinds are stale. A kind with no set at all is
"unknown", which is a problem too: never assume a backup nobody can find is fresh.

The offsite copies are judged by the offsite sync's own judge (``offsite.freshness``) against
``offsite.max_age_days``, the one offsite limit; ``check_offsite_copies`` runs it here and
``judge_freshness`` reports its lines under "offsite".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import kind_prefix, list_catalog
from hms_dr.manifest import BackupKind
from hms_dr.offsite.freshness import FreshnessVerdict, judge_offsite_freshness, read_newest_on_both_stores
from hms_dr.policy import FreshnessKind, OffsitePolicy, describe_duration
from hms_dr.records import Record
from hms_dr.wal.newest import newest_stored_wal

if TYPE_CHECKING:
    from hms_dr.store import Store

# What counts as "offsite": the newest of these kinds in the offsite store (issue 5 copies sets
# there under the same <cluster>/<kind>/<backup_set_id>/ keys as in the primary store).
OFFSITE_KINDS = (BackupKind.LOGICAL, BackupKind.BASE)
# The DAG that makes each kind: the one to look at when the kind goes stale.
PRODUCERS = {
    FreshnessKind.LOGICAL: "hms_daily_logical_backup",
    FreshnessKind.BASE: "hms_weekly_base_backup",
    FreshnessKind.WAL: "hms_wal_archive",
    FreshnessKind.OFFSITE: "hms_offsite_sync",
    FreshnessKind.RESTORE_TEST: "hms_restore_test",
}


@dataclass(frozen=True)
class NewestSet:
    """The newest complete set of one freshness kind, or ``finished_at=None`` when there is none."""

    kind: FreshnessKind
    where: str  # the store folder that was listed
    backup_set_id: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class FreshnessReport(Record):
    """The verdict: one line per watched kind, and the lines of the stale or unknown ones
    (check_backup_freshness's XCom is its to_xcom())."""

    checked_at: datetime
    lines: tuple[str, ...]
    problems: tuple[str, ...]


def _age_text(age: timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def judge_freshness(
    newest: Mapping[FreshnessKind, NewestSet],
    max_age: Mapping[FreshnessKind, timedelta],
    now: datetime,
    *,
    offsite: FreshnessVerdict | None = None,
) -> FreshnessReport:
    """Compare each watched kind's newest set with its maximum age at ``now``.

    Kinds in ``max_age`` are watched; a watched kind missing from ``newest`` or with no set is
    reported as unknown. A set finished in the future (clock skew) counts as fresh. The offsite
    copies are never judged here: ``offsite`` is the verdict of ``check_offsite_copies`` (None:
    not watched), reported line by line under the offsite kind.
    """
    lines: list[str] = []
    problems: list[str] = []
    for kind in FreshnessKind:
        if kind is FreshnessKind.OFFSITE:
            if offsite is not None:
                label = f"{kind.value} ({PRODUCERS[kind]})"
                lines.extend(f"{label}: {line}" for line in offsite.lines)
                problems.extend(f"{label}: {line}" for line in offsite.problems)
            continue
        allowed = max_age.get(kind)
        if allowed is None:
            continue
        found = newest.get(kind)
        label = f"{kind.value} ({PRODUCERS[kind]})"
        if found is None or found.finished_at is None:
            where = f" in {found.where}" if found is not None else ""
            line = f"{label}: unknown: no complete set{where} (allowed age {describe_duration(allowed)})"
            problems.append(line)
            lines.append(line)
            continue
        age = now - found.finished_at
        described = f"newest complete set {found.backup_set_id} finished {_age_text(age)} ago"
        if age > allowed:
            line = f"{label}: {described}, older than the {describe_duration(allowed)} allowed"
            problems.append(line)
        else:
            line = f"{label}: {described}, within {describe_duration(allowed)}"
        lines.append(line)
    return FreshnessReport(checked_at=now, lines=tuple(lines), problems=tuple(problems))


def _newest_in_catalog(
    store: Store,
    cluster: str,
    kinds: tuple[BackupKind, ...],
    freshness_kind: FreshnessKind,
    *,
    passed_only: bool = False,
) -> NewestSet:
    where = " and ".join(store.describe(kind_prefix(cluster, kind)) for kind in kinds)
    candidates = [
        backup_set
        for kind in kinds
        for backup_set in list_catalog(store, cluster, kind).sets
        if not passed_only or backup_set.manifest.body.get("passed") is True
    ]
    if not candidates:
        return NewestSet(freshness_kind, where)
    newest = max(candidates, key=lambda backup_set: (backup_set.finished_at, backup_set.backup_set_id))
    return NewestSet(freshness_kind, where, newest.backup_set_id, newest.finished_at)


def _newest_wal(store: Store, cluster: str) -> NewestSet:
    where = store.describe(kind_prefix(cluster, BackupKind.WAL))
    newest = newest_stored_wal(store, cluster)  # the WAL DAG's RPO reads the same newest WAL
    if newest is None:
        return NewestSet(FreshnessKind.WAL, where)
    return NewestSet(FreshnessKind.WAL, where, newest.name, newest.archived_at)


def check_offsite_copies(
    primary: Store, offsite: Store, cluster: str, settings: OffsitePolicy, now: datetime
) -> FreshnessVerdict:
    """The offsite sync's judgement of its copies (``OFFSITE_KINDS``), made from one listing of
    each store and one offsite manifest per kind, without a sync pass."""
    return judge_offsite_freshness(
        read_newest_on_both_stores(primary, offsite, cluster, OFFSITE_KINDS), settings.max_age_days_for, now
    )


def read_newest_sets(
    primary: Store, cluster: str, kinds: Mapping[FreshnessKind, Any]
) -> dict[FreshnessKind, NewestSet]:
    """The newest complete set of each kind in ``kinds`` (the policy's max_age keys; the offsite
    copies are ``check_offsite_copies``'s).

    The restore test counts only passed tests: a failed one proves nothing. WAL is judged by the
    ``archived_at`` of its newest set (wal/newest.py), as the WAL DAG's RPO is.
    """
    newest: dict[FreshnessKind, NewestSet] = {}
    catalog_kinds = {
        FreshnessKind.LOGICAL: (BackupKind.LOGICAL,),
        FreshnessKind.BASE: (BackupKind.BASE,),
        FreshnessKind.RESTORE_TEST: (BackupKind.RESTORE_TEST,),
    }
    for kind in kinds:
        if kind is FreshnessKind.WAL:
            newest[kind] = _newest_wal(primary, cluster)
        elif kind is FreshnessKind.OFFSITE:
            continue
        else:
            newest[kind] = _newest_in_catalog(
                primary, cluster, catalog_kinds[kind], kind, passed_only=kind is FreshnessKind.RESTORE_TEST
            )
    return newest
