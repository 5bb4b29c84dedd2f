"""Full or incremental: what one run of hms_weekly_base_backup takes, and whether the server can.

With ``base_backup.incremental`` on (PostgreSQL 17+), the DAG runs daily and each run takes an
incremental backup against the newest base set (the tip of the newest chain), unless:

- no base set exists yet, or the newest one's manifest is unreadable;
- the newest set's chain is broken (``physical.chain.resolve_chain``), or it lacks PostgreSQL's
  backup_manifest (the file ``pg_basebackup --incremental`` needs);
- it comes from another cluster (system identifier), another timeline than the server writes now
  (a failover happened since), or another PostgreSQL major (an upgrade happened since);
- the chain's full backup is ``full_every_days`` old (minus an hour: a daily schedule's start jitter
  must not push the weekly full to the eighth day), which bounds how many sets a restore combines.

Then it takes a full backup, and says why in one line per reason. The on-call DBA can force either
type (the DAG's ``backup_type`` param): a forced full always runs; a forced incremental with no
usable parent is refused (RequestRefused, one line) before anything is copied.

Everything here is a pure decision over manifest records and what the server reported: no store,
clock or server is read, so every rule is unit-tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from hms_dr.catalog import BackupSet
from hms_dr.errors import BackupChainBroken, ManifestInvalid, PreflightFailed, RequestRefused
from hms_dr.pginstalls import INCREMENTAL_BACKUP_MAJOR, server_version_major
from hms_dr.physical.chain import BackupChain, BackupType, resolve_chain
from hms_dr.physical.preflight import SourceCluster
from hms_dr.physical.staging import PAYLOAD_FORMATS
from hms_dr.physical.verifybackup import BACKUP_MANIFEST

PG_MANIFEST_FORMAT = PAYLOAD_FORMATS[BACKUP_MANIFEST]
# A full is due once the chain's full started this long before full_every_days ago: daily runs
# start a few seconds to minutes late, and "7 days minus 30 s" must count as 7 days.
FULL_DUE_SLACK = timedelta(hours=1)
SUMMARIZE_WAL_HINT = "ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf();"


class BackupTypeRequest(StrEnum):
    """The DAG's ``backup_type`` param: ``auto`` follows the policy, the others force a type."""

    AUTO = "auto"
    FULL = "full"
    INCREMENTAL = "incremental"


@dataclass(frozen=True)
class BackupPlan:
    """What this run takes: a full backup, or an incremental against ``parent`` (whose whole
    chain is ``chain``), and why, one reason a line."""

    backup_type: BackupType
    reasons: tuple[str, ...]
    parent: BackupSet | None = None
    chain: BackupChain | None = field(default=None, repr=False)

    @property
    def is_incremental(self) -> bool:
        return self.backup_type is BackupType.INCREMENTAL

    @property
    def parent_backup_set_id(self) -> str | None:
        return self.parent.backup_set_id if self.parent is not None else None


def wants_incremental(request: BackupTypeRequest, *, incremental_enabled: bool) -> bool:
    """Whether this run may take an incremental at all (then the server must be able to)."""
    return request is BackupTypeRequest.INCREMENTAL or (request is BackupTypeRequest.AUTO and incremental_enabled)


def check_incremental_source(source: SourceCluster, *, where: str, asked_by: str) -> None:
    """PreflightFailed (one line, with the fix) when ``source`` cannot take an incremental backup:
    older than 17, or summarize_wal off (the server then has no WAL summaries to find the changed
    blocks from). ``asked_by`` names what asked for it (the policy or the param)."""
    if source.server_major < INCREMENTAL_BACKUP_MAJOR:
        raise PreflightFailed(
            f"{asked_by} asks for incremental base backups, but {where} runs PostgreSQL {source.server_version}: "
            f"incremental backups need PostgreSQL {INCREMENTAL_BACKUP_MAJOR} or later; nothing was copied",
            hint="set base_backup.incremental: false in the policy (or run with backup_type full), "
            f"or upgrade the server to PostgreSQL {INCREMENTAL_BACKUP_MAJOR}+",
        )
    if source.summarize_wal != "on":
        raise PreflightFailed(
            f"{asked_by} asks for incremental base backups, but {where} has summarize_wal = "
            f"{source.summarize_wal or 'unknown'}: the server keeps no WAL summaries to find changed blocks; "
            "nothing was copied",
            hint=f"as a superuser: {SUMMARIZE_WAL_HINT} (then take a full backup: incrementals need summaries "
            "from their parent's start on)",
        )


def plan_base_backup(
    request: BackupTypeRequest,
    *,
    incremental_enabled: bool,
    full_every_days: int,
    sets: Sequence[BackupSet],
    unreadable_ids: Sequence[str],
    source: SourceCluster,
    now: datetime,
) -> BackupPlan:
    """The type of this run's base backup (see the module docstring).

    ``sets`` are the complete base sets (any order), ``unreadable_ids`` the ids of set folders
    whose manifest did not parse. A forced incremental with no usable parent raises
    RequestRefused; ``auto`` never raises, it falls back to a full backup."""
    if request is BackupTypeRequest.FULL:
        return BackupPlan(BackupType.FULL, ("backup_type full was asked for this run",))
    if request is BackupTypeRequest.AUTO and not incremental_enabled:
        return BackupPlan(BackupType.FULL, ("base_backup.incremental is off in the policy",))
    forced = request is BackupTypeRequest.INCREMENTAL
    found = _extendable_chain(
        sets, unreadable_ids, source, full_every_days=None if forced else full_every_days, now=now
    )
    if isinstance(found, BackupChain):
        tip = found.tip
        full_age = now - found.full.manifest.started_at
        reason = (
            f"incremental against base set {tip.backup_set_id}, the tip of a chain of {len(found.links)} "
            f"(full {found.full.backup_set_id}, {_days(full_age)} old)"
        )
        if forced:
            reason += "; backup_type incremental was asked for this run"
        return BackupPlan(BackupType.INCREMENTAL, (reason,), parent=tip, chain=found)
    if forced:
        raise RequestRefused(
            f"backup_type incremental refused: {'; '.join(found)}; nothing was copied",
            hint="run with backup_type full (or auto, which takes a full backup now)",
        )
    return BackupPlan(BackupType.FULL, tuple(found))


def _extendable_chain(
    sets: Sequence[BackupSet],
    unreadable_ids: Sequence[str],
    source: SourceCluster,
    *,
    full_every_days: int | None,
    now: datetime,
) -> BackupChain | list[str]:
    """The newest chain when an incremental may extend it, else the reasons it may not."""
    ordered = sorted(sets, key=lambda s: (s.finished_at, s.backup_set_id))
    newest_unreadable = max(unreadable_ids, default=None)
    if not ordered:
        if newest_unreadable is not None:
            return [f"the only base sets have unreadable manifests (newest {newest_unreadable})"]
        return ["no base backup set in the store yet"]
    tip = ordered[-1]
    if newest_unreadable is not None and newest_unreadable > tip.backup_set_id:
        # Set ids are UTC timestamps: the newest set is the one whose manifest cannot be read.
        return [f"the newest base set {newest_unreadable} has an unreadable manifest"]
    try:
        chain = resolve_chain(tip, {s.backup_set_id: s for s in ordered})
    except (BackupChainBroken, ManifestInvalid) as exc:
        return [f"the newest base set {tip.backup_set_id} cannot be extended: {exc.message}"]
    reasons = []
    if not any(p.format == PG_MANIFEST_FORMAT for p in tip.manifest.payloads):
        reasons.append(f"the newest base set {tip.backup_set_id} has no PostgreSQL backup_manifest payload")
    body = tip.manifest.body.get("base_backup") or {}
    tip_system = str(body.get("system_identifier") or "")
    if tip_system != source.system_identifier:
        reasons.append(
            f"the newest base set {tip.backup_set_id} is of system {tip_system or 'unknown'}, "
            f"the server is system {source.system_identifier}"
        )
    tip_timeline = body.get("stop_timeline", body.get("timeline"))
    if source.timeline is not None and tip_timeline != source.timeline:
        reasons.append(
            f"the newest base set {tip.backup_set_id} ends on timeline {tip_timeline}, "
            f"the server writes timeline {source.timeline} (a failover since)"
        )
    try:
        tip_major: int | None = server_version_major(str(body.get("server_version", "")))
    except ValueError:
        tip_major = None
    if tip_major != source.server_major:
        reasons.append(
            f"the newest base set {tip.backup_set_id} is of PostgreSQL {body.get('server_version') or 'unknown'}, "
            f"the server runs {source.server_version}"
        )
    if full_every_days is not None:
        full_age = now - chain.full.manifest.started_at
        if full_age >= timedelta(days=full_every_days) - FULL_DUE_SLACK:
            reasons.append(
                f"a full backup is due: the chain's full set {chain.full.backup_set_id} is {_days(full_age)} old "
                f"(base_backup.full_every_days: {full_every_days})"
            )
    return reasons or chain


def _days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:.1f} days"
