"""How old the newest offsite copy of each kind is, judged against the policy, purely.

Age is measured from when the copied set itself finished (its manifest's ``finished_at``), not
from when it was copied: a sync that copies last month's backup has not made the offsite store
fresh. A kind with sets on the primary but none offsite is a problem; a kind with no set on
either store (no base backups taken yet, say) is only reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.retention import describe_age


@dataclass(frozen=True)
class FreshnessVerdict:
    """One line per kind for the log, and the lines that fail the run."""

    lines: tuple[str, ...]
    problems: tuple[str, ...]


def judge_offsite_freshness(
    kinds: Mapping[str, Mapping[str, Any]], max_age_days: Callable[[BackupKind], int], now: datetime
) -> FreshnessVerdict:
    """``kinds`` is the sync report per kind (its ``newest_offsite`` and ``newest_primary``)."""
    lines: list[str] = []
    problems: list[str] = []
    for name, entry in kinds.items():
        kind = BackupKind(name)
        limit = timedelta(days=max_age_days(kind))
        newest = entry.get("newest_offsite")
        if not newest:
            if entry.get("newest_primary"):
                problems.append(f"{name}: no copy offsite although the primary holds {entry.get('primary_sets', 'some')} set(s)")
                lines.append(problems[-1])
            else:
                lines.append(f"{name}: no set on either store yet")
            continue
        if not newest.get("finished_at"):
            problems.append(f"{name}: the newest offsite set {newest['backup_set_id']} has an unreadable manifest")
            lines.append(problems[-1])
            continue
        age = now - parse_utc(newest["finished_at"])
        line = f"{name}: newest offsite copy {newest['backup_set_id']} is {describe_age(age)} old (limit {describe_age(limit)})"
        lines.append(line)
        if age > limit:
            problems.append(line + _primary_note(entry, limit, now))
    return FreshnessVerdict(lines=tuple(lines), problems=tuple(problems))


def _primary_note(entry: Mapping[str, Any], limit: timedelta, now: datetime) -> str:
    """Tell apart a sync that falls behind from backups that stopped: both end here."""
    newest = entry.get("newest_primary")
    if not newest:
        return "; the primary holds no set of this kind either"
    age = now - parse_utc(newest["published_at"])
    if age > limit:
        return f"; the primary's newest ({newest['backup_set_id']}) is {describe_age(age)} old too: the backups themselves are late"
    return f"; the primary holds {newest['backup_set_id']}, {describe_age(age)} old: the sync is falling behind"
