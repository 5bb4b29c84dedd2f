"""Choosing the base backup a point-in-time recovery starts from, and refusing targets no stored
backup can reach. Pure decisions over manifest records: no store, clock or server is read here.

Rule: the newest base backup whose stop point (stop_time for a time target, stop_lsn for an LSN
target) precedes the target; ``latest``, ``immediate``, a transaction id or a restore point name
start from the newest base backup, unless the operator names one. A target before the oldest
base backup, or after the newest archived WAL, is refused with one line naming both ends.

A base backup may be an incremental (PostgreSQL 17+): it is restored from its whole chain, the
full backup first and itself (the tip) last (``chain.resolve_chain``), and replay starts at the
tip's WAL. Every base set, full or incremental, is a candidate tip; the newest candidate whose
chain is whole wins. A broken chain is skipped when an older whole one serves the target, but
when it was the newest candidate the plan says so in a WARNING line (the DBA must repair it or
take a new full backup); when no candidate's chain is whole, BackupChainBroken names the link at
fault of the newest one. All of this is decided from manifests, before anything is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hms_dr.catalog import MAX_IDS_LISTED, BackupSet
from hms_dr.errors import (
    BackupChainBroken,
    ManifestInvalid,
    NoBackupForTarget,
    SetNotFound,
    TargetBeforeOldestBackup,
    WalMissing,
)
from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.physical.chain import BROKEN_CHAIN_HINT, resolve_chain
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
    """The base backup to restore: its chain, full first and the tip (where replay starts) last;
    one set for a full backup."""

    chain: tuple[BaseBackup, ...]
    reason: str
    skipped: tuple[str, ...] = ()  # base sets left out, with why; a WARNING line for a broken newest chain

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a recovery plan restores at least one base backup set")

    @property
    def base(self) -> BaseBackup:
        """The tip: its start WAL, carried WAL, stop point and timeline are the recovery's."""
        return self.chain[-1]

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(link.backup_set_id for link in self.chain)

    @property
    def is_incremental(self) -> bool:
        return len(self.chain) > 1

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(line for line in self.skipped if line.startswith(WARNING_PREFIX))


WARNING_PREFIX = "WARNING: "


def plan_recovery(
    base_sets: Sequence[BackupSet],
    archived: ArchivedWal | None,
    target: RecoveryTarget,
    *,
    backup_set_id: str | None = None,
) -> RecoveryPlan:
    """The base backup (with its chain) to recover ``target`` from; NoBackupForTarget (one line)
    when none can, BackupChainBroken when every candidate's chain is broken or the named set's is."""
    usable: list[BaseBackup] = []
    skipped: list[str] = []
    unusable: dict[str, str] = {}  # set id -> why it cannot be restored (nor be a link of a chain)
    for backup_set in base_sets:
        try:
            base = base_backup_of(backup_set)
        except ManifestInvalid as exc:
            skipped.append(exc.message)
            unusable[backup_set.backup_set_id] = exc.message
            continue
        if any(p.format == TABLESPACE_TAR_FORMAT for p in backup_set.manifest.payloads):
            why = f"base backup set {backup_set.backup_set_id} has tablespaces, which recovery does not restore yet"
            skipped.append(why)
            unusable[backup_set.backup_set_id] = why
            continue
        usable.append(base)
    usable.sort(key=lambda b: (b.stop_lsn, b.stop_time, b.backup_set_id))
    if not usable:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise NoBackupForTarget(
            f"no usable base backup set in the catalog{why}", hint="run hms_weekly_base_backup first"
        )
    chains = _Chains(base_sets, usable, unusable)

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
        chain = chains.of(chosen)  # the operator named it: a broken chain is refused, never replaced
        return RecoveryPlan(chain, _with_chain(f"base backup set {backup_set_id} was named", chain), tuple(skipped))

    if target.kind is TargetKind.TIME:
        assert target.time is not None
        candidates = sorted((b for b in usable if b.stop_time <= target.time), key=lambda b: (b.stop_time, b.stop_lsn))
        if not candidates:
            _refuse_before(min(usable, key=lambda b: b.stop_time), target)
        _refuse_after(archived, target)
        chain = chains.newest_whole(candidates, skipped)
        reason = (
            f"newest base backup consistent before {format_time(target.time)} (at {format_time(chain[-1].stop_time)})"
        )
    elif target.kind is TargetKind.LSN:
        assert target.lsn is not None
        candidates = [b for b in usable if b.stop_lsn <= target.lsn]
        if not candidates:
            _refuse_before(usable[0], target)
        _refuse_after(archived, target)
        chain = chains.newest_whole(candidates, skipped)
        reason = (
            f"newest base backup consistent before LSN {format_lsn(target.lsn)} (at {format_lsn(chain[-1].stop_lsn)})"
        )
    else:
        chain = chains.newest_whole(usable, skipped)
        reason = f"the newest base backup serves a {target.kind.value} target"
    return RecoveryPlan(chain, _with_chain(reason, chain), tuple(skipped))


def _with_chain(reason: str, chain: tuple[BaseBackup, ...]) -> str:
    if len(chain) == 1:
        return reason
    return f"{reason}; an incremental, restored from its chain of {len(chain)} sets: {', '.join(b.backup_set_id for b in chain)}"


class _Chains:
    """Resolving candidate tips into whole chains of usable sets, over one catalog listing."""

    def __init__(self, base_sets: Sequence[BackupSet], usable: Sequence[BaseBackup], unusable: dict[str, str]) -> None:
        self.sets_by_id = {s.backup_set_id: s for s in base_sets}
        self.usable_by_id = {b.backup_set_id: b for b in usable}
        self.unusable = unusable

    def of(self, tip: BaseBackup) -> tuple[BaseBackup, ...]:
        """``tip``'s chain, full first; BackupChainBroken (naming the link at fault) otherwise."""
        try:
            chain = resolve_chain(tip.backup_set, self.sets_by_id)
        except ManifestInvalid as exc:
            raise BackupChainBroken(
                f"the chain of base backup set {tip.backup_set_id} cannot be read: {exc.message}",
                tip_backup_set_id=tip.backup_set_id,
                hint=BROKEN_CHAIN_HINT,
            ) from None
        for link_id in chain.ids:
            if link_id not in self.usable_by_id:
                raise BackupChainBroken(
                    f"base backup set {link_id}, a link of the chain of base backup set {tip.backup_set_id}, "
                    f"cannot be restored: {self.unusable.get(link_id, 'not usable')}",
                    tip_backup_set_id=tip.backup_set_id,
                    hint=BROKEN_CHAIN_HINT,
                )
        return tuple(self.usable_by_id[link_id] for link_id in chain.ids)

    def newest_whole(self, candidates: Sequence[BaseBackup], skipped: list[str]) -> tuple[BaseBackup, ...]:
        """The chain of the newest of ``candidates`` (oldest first) whose chain is whole; each
        broken one newer than it goes to ``skipped``, the newest candidate's as a WARNING. When
        none is whole: the newest candidate's BackupChainBroken."""
        broken: list[BackupChainBroken] = []
        for tip in reversed(candidates):
            try:
                chain = self.of(tip)
            except BackupChainBroken as exc:
                broken.append(exc)
                continue
            for position, refusal in enumerate(broken):
                if position == 0:
                    skipped.append(
                        f"{WARNING_PREFIX}the newest base backup set that can serve the target, {refusal.tip_backup_set_id}, "
                        f"cannot be restored ({refusal.message}); recovering from the older {tip.backup_set_id} instead, "
                        "which replays more WAL"
                    )
                else:
                    skipped.append(refusal.message)
            return chain
        raise broken[0]


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
