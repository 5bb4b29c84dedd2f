"""How old the newest offsite copy of each kind is, judged against the policy, purely: the one
judge of offsite freshness (its limits are ``offsite.max_age_days``/``max_age_days_by_kind``,
policy/offsite.py says why there). hms_offsite_sync calls it on its pass's report,
hms_backup_freshness on ``read_newest_on_both_stores`` every 15 minutes.

Age is measured from when the copied set itself finished (its manifest's ``finished_at``), not
from when it was copied: a sync that copies last month's backup has not made the offsite store
fresh. A kind with sets on the primary but none offsite is a problem; a kind with no set on
either store (no base backups taken yet, say) is only reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from hms_dr.catalog import SetFolder, key_for, read_set_folders
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import MANIFEST_NAME, BackupKind, parse_manifest
from hms_dr.records import Record
from hms_dr.retention import describe_age

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewestOffsite(Record):
    """The newest complete offsite set of a kind and when it finished (None: its manifest is unreadable)."""

    backup_set_id: str
    finished_at: datetime | None


@dataclass(frozen=True)
class NewestPrimary(Record):
    """The newest complete primary set of a kind and when its manifest was written."""

    backup_set_id: str
    published_at: datetime


class NewestOnBothStores(Protocol):
    """What the judge reads of one kind: a sync pass's kind report, or ``KindNewest``."""

    @property
    def primary_sets(self) -> int: ...

    @property
    def newest_primary(self) -> NewestPrimary | None: ...

    @property
    def newest_offsite(self) -> NewestOffsite | None: ...


@dataclass(frozen=True)
class KindNewest(Record):
    """One kind's newest set on each store, read without a sync pass."""

    primary_sets: int
    newest_primary: NewestPrimary | None
    newest_offsite: NewestOffsite | None


@dataclass(frozen=True)
class FreshnessVerdict:
    """One line per kind for the log, and the lines that fail the run."""

    lines: tuple[str, ...]
    problems: tuple[str, ...]


def newest_primary(folders: Mapping[str, SetFolder]) -> NewestPrimary | None:
    """The newest complete set of a primary listing (ids and WAL names sort by age)."""
    newest = max((set_id for set_id, folder in folders.items() if folder.complete), default=None)
    return None if newest is None else NewestPrimary(newest, folders[newest].published_at)


def read_newest_offsite(
    offsite: Store,
    cluster: str,
    kind: BackupKind,
    backup_set_id: str | None,
    finished: Mapping[str, datetime] | None = None,
) -> NewestOffsite | None:
    """The newest complete offsite set and when it finished: known when ``finished`` (a pass's
    copies) has it, else from its offsite manifest (one read)."""
    if backup_set_id is None:
        return None
    finished_at = (finished or {}).get(backup_set_id)
    if finished_at is None:
        key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
        try:
            finished_at = parse_manifest(offsite.get_bytes(key), where=offsite.describe(key)).finished_at
        except ManifestInvalid as exc:
            log.warning("newest offsite %s set: %s", kind.value, exc.message)
    return NewestOffsite(backup_set_id, finished_at)


def read_newest_on_both_stores(
    primary: Store, offsite: Store, cluster: str, kinds: Sequence[BackupKind]
) -> dict[str, KindNewest]:
    """Per kind, one listing of each store and one offsite manifest read: the judge's input
    without a sync pass (hms_backup_freshness)."""
    newest: dict[str, KindNewest] = {}
    for kind in kinds:
        primary_folders = read_set_folders(primary, cluster, kind)
        offsite_ids = [set_id for set_id, folder in read_set_folders(offsite, cluster, kind).items() if folder.complete]
        newest[kind.value] = KindNewest(
            primary_sets=sum(folder.complete for folder in primary_folders.values()),
            newest_primary=newest_primary(primary_folders),
            newest_offsite=read_newest_offsite(offsite, cluster, kind, max(offsite_ids, default=None)),
        )
    return newest


def judge_offsite_freshness(
    kinds: Mapping[str, NewestOnBothStores], max_age_days: Callable[[BackupKind], int], now: datetime
) -> FreshnessVerdict:
    """``kinds`` is, per kind name, its newest set on each store; ``max_age_days`` is the offsite
    section's ``max_age_days_for``."""
    lines: list[str] = []
    problems: list[str] = []
    for name, entry in kinds.items():
        kind = BackupKind(name)
        limit = timedelta(days=max_age_days(kind))
        newest = entry.newest_offsite
        if newest is None:
            if entry.newest_primary is not None:
                problems.append(f"{name}: no copy offsite although the primary holds {entry.primary_sets} set(s)")
                lines.append(problems[-1])
            else:
                lines.append(f"{name}: no set on either store yet")
            continue
        if newest.finished_at is None:
            problems.append(f"{name}: the newest offsite set {newest.backup_set_id} has an unreadable manifest")
            lines.append(problems[-1])
            continue
        age = now - newest.finished_at
        line = f"{name}: newest offsite copy {newest.backup_set_id} is {describe_age(age)} old (limit {describe_age(limit)})"
        lines.append(line)
        if age > limit:
            problems.append(line + _primary_note(entry.newest_primary, limit, now))
    return FreshnessVerdict(lines=tuple(lines), problems=tuple(problems))


def _primary_note(newest: NewestPrimary | None, limit: timedelta, now: datetime) -> str:
    """Tell apart a sync that falls behind from backups that stopped: both end here."""
    if newest is None:
        return "; the primary holds no set of this kind either"
    age = now - newest.published_at
    if age > limit:
        return f"; the primary's newest ({newest.backup_set_id}) is {describe_age(age)} old too: the backups themselves are late"
    return f"; the primary holds {newest.backup_set_id}, {describe_age(age)} old: the sync is falling behind"
