"""What one sync pass does for one kind, decided purely from the two stores' listings.

- **copy**: complete on the primary (manifest there) and without a manifest offsite, whether
  the offsite folder is empty or holds the leftovers of an interrupted copy;
- **repair**: complete offsite but an object is missing or has another size than on the
  primary (a truncated or lost payload, found without reading a byte);
- **re-verify**: complete offsite and due this run for a full sha256 re-read, which finds the
  corruption a size cannot (a flipped bit). Re-reading every copy every week would read the whole
  offsite store weekly, so each set falls in one of ``reverify_weeks`` slots by a hash of its id
  and is re-read once every that many weeks; 1 re-reads everything on every run;
- **too old**: outside the offsite window and not the newest of its kind: not copied, since
  offsite retention would expire it at once (and, locked, could not even delete it). A set's age
  comes from its id (the UTC time it started); WAL sets are named after their segment, so theirs
  comes from when their manifest was written.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hms_dr.catalog import SetFolder
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind, parse_backup_set_id


@dataclass(frozen=True)
class KindCopyPlan:
    """One kind's work for this pass; every list is sorted by backup set id."""

    kind: BackupKind
    to_copy: tuple[str, ...] = ()
    to_repair: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # set id -> file names
    to_reverify: tuple[str, ...] = ()
    too_old: tuple[str, ...] = ()
    in_sync: int = 0  # complete on both stores with the same objects and sizes


def reverify_slot(backup_set_id: str, reverify_weeks: int) -> int:
    """The week slot of a set: stable across runs and machines (crc32, not Python's hash)."""
    return zlib.crc32(backup_set_id.encode("utf-8")) % reverify_weeks


def due_for_reverify(backup_set_id: str, reverify_weeks: int, now: datetime) -> bool:
    """Whether this run re-reads the set: its slot is this week's (weeks counted since 0001-01-01)."""
    return reverify_slot(backup_set_id, reverify_weeks) == (now.toordinal() // 7) % reverify_weeks


def started_at(folder: SetFolder) -> datetime:
    """When the set was taken, read from the listing alone: its id, else its manifest's mtime."""
    try:
        return parse_backup_set_id(folder.backup_set_id)
    except ManifestInvalid:
        return folder.published_at


def plan_kind_copies(
    kind: BackupKind,
    primary: Mapping[str, SetFolder],
    offsite: Mapping[str, SetFolder],
    *,
    window: timedelta,
    now: datetime,
    reverify_weeks: int,
) -> KindCopyPlan:
    """Diff two stores' folders of one kind by name and size."""
    complete = {set_id: folder for set_id, folder in primary.items() if folder.complete}
    newest = max(complete.values(), key=lambda f: (started_at(f), f.backup_set_id)).backup_set_id if complete else None
    to_copy: list[str] = []
    to_repair: dict[str, tuple[str, ...]] = {}
    too_old: list[str] = []
    in_sync = 0
    for set_id, folder in complete.items():
        there = offsite.get(set_id)
        if there is None or not there.complete:
            if now - started_at(folder) > window and set_id != newest:
                too_old.append(set_id)
            else:
                to_copy.append(set_id)
            continue
        differing = tuple(
            sorted(
                name
                for name, obj in folder.objects.items()
                if name not in there.objects or there.objects[name].size_bytes != obj.size_bytes
            )
        )
        if differing:
            to_repair[set_id] = differing
        else:
            in_sync += 1
    busy = set(to_copy) | set(to_repair)
    to_reverify = [
        set_id
        for set_id, folder in offsite.items()
        if folder.complete and set_id not in busy and due_for_reverify(set_id, reverify_weeks, now)
    ]
    return KindCopyPlan(
        kind=kind,
        to_copy=tuple(sorted(to_copy)),
        to_repair=to_repair,
        to_reverify=tuple(sorted(to_reverify)),
        too_old=tuple(sorted(too_old)),
        in_sync=in_sync,
    )
