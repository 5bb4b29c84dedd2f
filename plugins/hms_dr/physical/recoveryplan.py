"""Choosing the base backup a point-in-time recovery starts from, and refusing targets no stored
backup can reach. Pure decisions over manifest records: no store, clock or server is read here.

Rule: the newest base backup whose stop point (stop_time for a time target, stop_lsn for an LSN
target) precedes the target; ``latest``, ``immediate``, a transaction id or a restore point name
start from the newest base backup, unless the operator names one. A target before the oldest
base backup, or after the newest archived WAL, is refused with one line naming both ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hms_dr.catalog import MAX_IDS_LISTED, BackupSet
from hms_dr.errors import ManifestInvalid, NoBackupForTarget, SetNotFound, TargetBeforeOldestBackup, WalMissing
from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.physical.targets import RecoveryTarget, TargetKind, format_time
from hms_dr.physical.walpath import WalPath
from hms_dr.wal.names import (
    DEFAULT_WAL_SEGMENT_SIZE,
    format_lsn,
    parse_lsn,
    parse_segment_name,
    segment_file_name,
    segment_start_lsn,
)

TABLESPACE_TAR_FORMAT = "pg_basebackup-tablespace-tar"


@dataclass(frozen=True)
class BaseBackup:
    """A base backup set as recovery sees it: where its WAL starts and where it is consistent."""

    backup_set: BackupSet
    start_lsn: int
    stop_lsn: int
    timeline: int
    start_wal_file: str
    stop_wal_file: str
    stop_time: datetime
    wal_segment_size: int
    system_identifier: str

    @property
    def backup_set_id(self) -> str:
        return self.backup_set.backup_set_id

    def carried_segments(self) -> tuple[str, ...]:
        """The WAL segments the set's own pg_wal.tar holds (start to stop, on its timeline)."""
        _, first = parse_segment_name(self.start_wal_file, self.wal_segment_size)
        _, last = parse_segment_name(self.stop_wal_file, self.wal_segment_size)
        return tuple(segment_file_name(self.timeline, s, self.wal_segment_size) for s in range(first, last + 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_set_id": self.backup_set_id,
            "start_lsn": format_lsn(self.start_lsn),
            "stop_lsn": format_lsn(self.stop_lsn),
            "timeline": self.timeline,
            "start_wal_file": self.start_wal_file,
            "stop_wal_file": self.stop_wal_file,
            "stop_time": format_time(self.stop_time),
            "system_identifier": self.system_identifier,
        }


def base_backup_of(backup_set: BackupSet) -> BaseBackup:
    """The recovery facts of a base set's manifest; ManifestInvalid when one is missing."""
    if backup_set.kind is not BackupKind.BASE:
        raise ManifestInvalid(f"backup set {backup_set.kind.value}/{backup_set.backup_set_id} is not a base backup")
    body = backup_set.manifest.body.get("base_backup")
    where = f"base backup set {backup_set.backup_set_id}"
    if not isinstance(body, dict):
        raise ManifestInvalid(f"{where} has no base_backup section in its manifest")
    try:
        segment_size = int(body.get("wal_segment_size") or DEFAULT_WAL_SEGMENT_SIZE)
        record = BaseBackup(
            backup_set=backup_set,
            start_lsn=parse_lsn(str(body["start_lsn"])),
            stop_lsn=parse_lsn(str(body["stop_lsn"])),
            timeline=int(body["timeline"]),
            start_wal_file=str(body["start_wal_file"]),
            stop_wal_file=str(body["stop_wal_file"]),
            stop_time=parse_utc(str(body["stop_time"])),
            wal_segment_size=segment_size,
            system_identifier=str(body.get("system_identifier", "")),
        )
        parse_segment_name(record.start_wal_file, segment_size)
        parse_segment_name(record.stop_wal_file, segment_size)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestInvalid(f"{where} has a missing or malformed base_backup field: {exc}") from None
    return record


@dataclass(frozen=True)
class ArchivedWal:
    """The newest WAL the store holds on the recovery path: its name, when it was archived, and
    the position just after it."""

    newest_segment: str
    archived_at: datetime
    end_lsn: int


@dataclass(frozen=True)
class RecoveryPlan:
    base: BaseBackup
    reason: str
    skipped: tuple[str, ...] = ()  # base sets left out, with why


def plan_recovery(
    base_sets: Sequence[BackupSet],
    archived: ArchivedWal | None,
    target: RecoveryTarget,
    *,
    backup_set_id: str | None = None,
) -> RecoveryPlan:
    """The base backup to recover ``target`` from; NoBackupForTarget (one line) when none can."""
    usable: list[BaseBackup] = []
    skipped: list[str] = []
    for backup_set in base_sets:
        try:
            base = base_backup_of(backup_set)
        except ManifestInvalid as exc:
            skipped.append(exc.message)
            continue
        if any(p.format == TABLESPACE_TAR_FORMAT for p in backup_set.manifest.payloads):
            skipped.append(
                f"base backup set {backup_set.backup_set_id} has tablespaces, which recovery does not restore yet"
            )
            continue
        usable.append(base)
    usable.sort(key=lambda b: (b.stop_lsn, b.stop_time, b.backup_set_id))
    if not usable:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise NoBackupForTarget(
            f"no usable base backup set in the catalog{why}", hint="run hms_weekly_base_backup first"
        )

    if backup_set_id is not None:
        chosen = next((b for b in usable if b.backup_set_id == backup_set_id), None)
        if chosen is None:
            ids = sorted((b.backup_set_id for b in usable), reverse=True)[:MAX_IDS_LISTED]
            raise SetNotFound(
                f"base backup set {backup_set_id} is not in the catalog (or is not usable); "
                f"the newest usable base backup set{'s' if len(ids) > 1 else ''}: {', '.join(ids)}",
                kind=BackupKind.BASE.value,
                backup_set_id=backup_set_id,
            )
        _refuse_before(chosen, target)
        _refuse_after(archived, target)
        return RecoveryPlan(chosen, f"base backup set {backup_set_id} was named", tuple(skipped))

    newest = usable[-1]
    if target.kind is TargetKind.TIME:
        assert target.time is not None
        candidates = [b for b in usable if b.stop_time <= target.time]
        if not candidates:
            _refuse_before(min(usable, key=lambda b: b.stop_time), target)
        _refuse_after(archived, target)
        chosen = max(candidates, key=lambda b: (b.stop_time, b.stop_lsn))
        reason = f"newest base backup consistent before {format_time(target.time)} (at {format_time(chosen.stop_time)})"
    elif target.kind is TargetKind.LSN:
        assert target.lsn is not None
        candidates = [b for b in usable if b.stop_lsn <= target.lsn]
        if not candidates:
            _refuse_before(usable[0], target)
        _refuse_after(archived, target)
        chosen = candidates[-1]
        reason = f"newest base backup consistent before LSN {format_lsn(target.lsn)} (at {format_lsn(chosen.stop_lsn)})"
    else:
        chosen = newest
        reason = f"the newest base backup serves a {target.kind.value} target"
    return RecoveryPlan(chosen, reason, tuple(skipped))


def _refuse_before(oldest: BaseBackup, target: RecoveryTarget) -> None:
    if target.kind is TargetKind.TIME and target.time is not None and target.time < oldest.stop_time:
        raise TargetBeforeOldestBackup(
            f"recovery target time {format_time(target.time)} is before base backup set {oldest.backup_set_id}, "
            f"the oldest that can serve it, which is consistent only from {format_time(oldest.stop_time)}"
        )
    if target.kind is TargetKind.LSN and target.lsn is not None and target.lsn < oldest.stop_lsn:
        raise TargetBeforeOldestBackup(
            f"recovery target LSN {format_lsn(target.lsn)} is before base backup set {oldest.backup_set_id}, "
            f"the oldest that can serve it, which is consistent only from LSN {format_lsn(oldest.stop_lsn)}"
        )


def _refuse_after(archived: ArchivedWal | None, target: RecoveryTarget) -> None:
    if target.kind not in (TargetKind.TIME, TargetKind.LSN):
        return
    hint = "ship the WAL spool to the store (hms_wal_archive) first, or choose an earlier target; 'latest' recovers all archived WAL"
    if archived is None:
        raise NoBackupForTarget(
            f"recovery target {target.describe()} is after the newest archived WAL: the store holds none", hint=hint
        )
    if target.kind is TargetKind.TIME and target.time is not None and target.time > archived.archived_at:
        raise NoBackupForTarget(
            f"recovery target time {format_time(target.time)} is after the newest archived WAL: "
            f"{archived.newest_segment} was archived at {format_time(archived.archived_at)}",
            hint=hint,
        )
    if target.kind is TargetKind.LSN and target.lsn is not None and target.lsn >= archived.end_lsn:
        raise NoBackupForTarget(
            f"recovery target LSN {format_lsn(target.lsn)} is after the newest archived WAL: "
            f"{archived.newest_segment} ends at {format_lsn(archived.end_lsn)}",
            hint=hint,
        )


def refuse_wal_gap(path: WalPath, target: RecoveryTarget, *, archived_at_before_gap: datetime | None) -> None:
    """WalMissing when the first file missing from the stored WAL lies before ``target``.

    ``latest`` needs every file (PostgreSQL would stop at the gap and promote without the rest);
    an LSN or time target needs the files up to it (for a time target: the file before the gap
    was archived before the target time, so replay must go past the gap). An xid or restore
    point target may lie before the gap: recovery starts, and aborts if it asks for the file.
    """
    missing = path.first_missing
    if missing is None or target.kind is TargetKind.IMMEDIATE:
        return
    before = path.before(missing)
    where = f"WAL file {missing} is missing from the store" + (
        f" (it holds {before} before it and {path.newest} after)" if before and path.newest else ""
    )
    hint = "find the file (the WAL spool of the old primary, the offsite store) and ship it, or recover to a target before it"
    if target.kind is TargetKind.LATEST:
        raise WalMissing(
            f"{where}: recovery to 'latest' would stop there and lose everything archived after it", hint=hint
        )
    if (
        target.kind is TargetKind.LSN
        and target.lsn is not None
        and target.lsn >= segment_start_lsn(missing, path.segment_size_bytes)
    ):
        raise WalMissing(f"{where}: recovery to LSN {format_lsn(target.lsn)} must replay it", hint=hint)
    if (
        target.kind is TargetKind.TIME
        and target.time is not None
        and (archived_at_before_gap is None or target.time > archived_at_before_gap)
    ):
        raise WalMissing(f"{where}: recovery to {format_time(target.time)} must replay it", hint=hint)
