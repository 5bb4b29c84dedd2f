"""Planning a restore test: the request read from the run's params, the set found, the scratch
names, and the mode this store can serve (logical only, saying why, while no base backup reaches
the set: a new install before its first weekly base backup).

A set the operator named and the store lacks is the request's fault (RequestRefused, no page); one
a new-set event named, or "latest" with none at all, is the system's and pages. The restore target
must not be production: same database, or the same cluster by its system identifier.

An upgrade rehearsal (param ``upgrade_rehearsal``) restores into the policy's rehearsal server
instead, which must run a NEWER major than the server the set was taken from (the manifest's
``server.version``): otherwise it proves nothing about an upgrade. It is asked for by an operator,
on demand, so every reason it cannot be served is the request's (RequestRefused, one line, before
anything is downloaded): no rehearsal server in the policy, its Connection missing, its major not
newer, or a mode with the physical drill (a base backup recovers only into its own major).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr import patterns
from hms_dr.catalog import BackupSet, find_requested_set, find_set, list_catalog
from hms_dr.database import server_version
from hms_dr.errors import NoBackupForTarget, ParamInvalid, PreflightFailed, RequestRefused
from hms_dr.manifest import BackupKind
from hms_dr.patterns import matcher
from hms_dr.pginstalls import server_version_major
from hms_dr.physical.drill_mode import choose_drill_mode
from hms_dr.policy import ClusterPolicy, RestoreTestMode, RestoreTestPolicy, StagingPolicy
from hms_dr.restore_test.records import DrillPlan, RestoreTestPlan, UpgradeRehearsal
from hms_dr.scratch.cluster import drill_scratch_cluster
from hms_dr.scratch.database import (
    ScratchDatabaseKind,
    refuse_production_target,
    scratch_database_name,
    system_identifier,
)

if TYPE_CHECKING:
    from hms_dr.pgtools import ConnectionInfo
    from hms_dr.store import Store

log = logging.getLogger(__name__)

BACKUP_ID = matcher(patterns.BACKUP_ID)
LATEST = "latest"


@dataclass(frozen=True)
class RestoreTestRequest:
    """What a run asks for, checked: the set (as named, and as resolved), jobs, mode, keep_scratch,
    and whether it is an upgrade rehearsal."""

    named: str  # "latest" or a set id, as the params say
    backup_id: str  # the set id to find ("latest": the newest, unless a new-set event names one)
    restore_jobs: int
    keep_scratch: bool
    mode: RestoreTestMode
    upgrade_rehearsal: bool = False

    @property
    def operator_named_the_set(self) -> bool:
        return self.named != LATEST


def read_request(
    params: Mapping[str, Any], *, triggered_set_id: str | None, default_mode: RestoreTestMode
) -> RestoreTestRequest:
    """The run's params, checked. ``triggered_set_id``: the set of the new-set event behind this
    run, if any; it stands for "latest".

    :raises RequestRefused: a malformed backup_id, restore_jobs out of 1..16, an unknown mode, an
        upgrade rehearsal with a mode that has the physical drill.
    :raises ParamInvalid: a new-set event naming a malformed set id (ours, not the operator's: it pages).
    """
    named = str(params.get("backup_id") or LATEST).strip()
    if not BACKUP_ID.fullmatch(named):
        raise RequestRefused(f"backup_id must be 'latest' or an id like 20261124T020001Z, got {named!a}")
    backup_id = (triggered_set_id or named) if named == LATEST else named
    if not BACKUP_ID.fullmatch(backup_id):
        raise ParamInvalid(f"the new-set event names backup set {backup_id!a}, not an id like 20261124T020001Z")
    jobs = int(params.get("restore_jobs") or 2)
    if not 1 <= jobs <= 16:
        raise RequestRefused(f"restore_jobs must be between 1 and 16, got {jobs}")
    value = str(params.get("mode") or default_mode.value)
    try:
        mode = RestoreTestMode(value)
    except ValueError:
        raise RequestRefused(f"mode must be logical, physical or both, got {value!a}") from None
    rehearsal = params.get("upgrade_rehearsal") or False
    if not isinstance(rehearsal, bool):
        raise RequestRefused(f"upgrade_rehearsal must be true or false, got {rehearsal!a}")
    if rehearsal and mode.physical:
        # A base backup is a data directory of production's major: no newer server can recover it.
        raise RequestRefused(
            f"upgrade_rehearsal restores the daily set with pg_restore, mode {mode.value} has the physical drill, "
            "which cannot cross PostgreSQL majors: ask for mode logical"
        )
    return RestoreTestRequest(named, backup_id, jobs, bool(params.get("keep_scratch")), mode, rehearsal)


def rehearsal_connection_id(restore_test: RestoreTestPolicy) -> str:
    """The policy's rehearsal server; RequestRefused when it names none."""
    if restore_test.upgrade_rehearsal_connection_id is None:
        raise RequestRefused(
            "upgrade_rehearsal needs a restore server of a newer PostgreSQL major: "
            "the policy's restore_test.upgrade_rehearsal_connection_id is not set"
        )
    return restore_test.upgrade_rehearsal_connection_id


def rehearsal_server(connection_id: str, connect: Callable[[str], ConnectionInfo]) -> ConnectionInfo:
    """The rehearsal server's Connection (``connect`` reads it); a missing or incomplete one refuses the request."""
    try:
        return connect(connection_id)
    except PreflightFailed as exc:  # the Connection is not defined, or lacks host, login or schema
        raise RequestRefused(f"upgrade_rehearsal: {exc.message}") from None


def plan_upgrade_rehearsal(
    connection_id: str, *, backup_set_id: str, set_version: str | None, target_version: str
) -> UpgradeRehearsal:
    """The rehearsal of ``backup_set_id`` (taken from a server of ``set_version``, as its manifest
    says) on a server of ``target_version`` (a pure decision).

    :raises RequestRefused: the set records no server version, or the rehearsal server's major is
        not newer than the set's (the message names both versions).
    """
    if not set_version:
        raise RequestRefused(
            f"upgrade_rehearsal: set {backup_set_id} records no server.version, so no upgrade can be rehearsed with it"
        )
    from_version, to_version = set_version.split()[0], target_version.split()[0]
    if server_version_major(to_version) <= server_version_major(from_version):
        raise RequestRefused(
            f"upgrade_rehearsal: the rehearsal server {connection_id!r} runs PostgreSQL {to_version}, "
            f"not a newer major than PostgreSQL {from_version} that set {backup_set_id} was taken from"
        )
    return UpgradeRehearsal(connection_id, from_version, to_version)


def mode_for_store(requested: RestoreTestMode, daily_set: BackupSet, base_sets: Sequence[BackupSet]) -> RestoreTestMode:
    """``requested``, or logical only (with a warning saying why) while no base backup in
    ``base_sets`` can reach the daily set (``hms_dr.physical.drill_mode``)."""
    if not requested.physical:
        return requested
    choice = choose_drill_mode(requested, daily_set, base_sets)
    if choice.fallback_reason:
        log.warning("%s", choice.fallback_reason)
    return choice.mode


def plan_drill(backup_set: BackupSet, staging_dir: Path, scratch: str) -> DrillPlan:
    """Where the drill's cluster goes and which LSN it recovers to (the daily set's snapshot).

    :raises NoBackupForTarget: the set records no snapshot LSN.
    """
    snapshot = backup_set.manifest.body.get("snapshot") or {}
    if not snapshot.get("wal_lsn"):
        raise NoBackupForTarget(
            f"daily set {backup_set.backup_set_id} records no snapshot LSN: the physical drill cannot target it"
        )
    return DrillPlan.of(str(snapshot["wal_lsn"]), drill_scratch_cluster(staging_dir, scratch))


def plan_for_set(
    request: RestoreTestRequest,
    backup_set: BackupSet,
    base_sets: Sequence[BackupSet],
    *,
    scratch: str,
    staging: StagingPolicy,
    upgrade_rehearsal: UpgradeRehearsal | None = None,
) -> RestoreTestPlan:
    """The plan for ``backup_set`` once found: the mode this store can serve, and the drill's plan
    when that mode has the drill."""
    mode = mode_for_store(request.mode, backup_set, base_sets)
    return RestoreTestPlan(
        backup_set_id=backup_set.backup_set_id,
        manifest_key=backup_set.manifest_key,
        scratch_database=scratch,
        restore_jobs=request.restore_jobs,
        keep_scratch=request.keep_scratch,
        mode=mode,
        physical=plan_drill(backup_set, staging.dir, scratch) if mode.physical else None,
        upgrade_rehearsal=upgrade_rehearsal,
    )


def plan_restore_test(
    params: Mapping[str, Any],
    *,
    triggered_set_id: str | None,
    store: Store,
    cluster: ClusterPolicy,
    restore_test: RestoreTestPolicy,
    staging: StagingPolicy,
    production: ConnectionInfo,
    target: ConnectionInfo,
    connect: Callable[[str], ConnectionInfo] | None = None,
) -> RestoreTestPlan:
    """Check the request, find the set, refuse a restore target that is production, and plan the run.

    ``target`` is the restore server; ``connect`` reads a postgres Connection by id, for the
    rehearsal server of an upgrade rehearsal (which then replaces ``target``, and is refused as
    production just the same).
    """
    request = read_request(params, triggered_set_id=triggered_set_id, default_mode=restore_test.mode)
    rehearsal_id = rehearsal_connection_id(restore_test) if request.upgrade_rehearsal else None
    if rehearsal_id is not None:
        if connect is None:
            raise ValueError("an upgrade rehearsal needs connect, to read the rehearsal server's Connection")
        target = rehearsal_server(rehearsal_id, connect)
    find = find_requested_set if request.operator_named_the_set else find_set
    backup_set = find(store, cluster.name, BackupKind.LOGICAL, request.backup_id)
    rehearsal = None
    if rehearsal_id is not None:
        rehearsal = plan_upgrade_rehearsal(
            rehearsal_id,
            backup_set_id=backup_set.backup_set_id,
            set_version=(backup_set.manifest.body.get("server") or {}).get("version"),
            target_version=server_version(target)[1],
        )
    scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, backup_set.backup_set_id)
    refuse_production_target(
        target=target,
        production=production,
        scratch_name=scratch,
        target_system_id=system_identifier(target),
        production_system_id=system_identifier(production),
    )
    log.info(
        "restore test of %s set %s (%s) into scratch database %s on %s:%s%s",
        backup_set.kind.value,
        backup_set.backup_set_id,
        store.describe(backup_set.manifest_key),
        scratch,
        target.host,
        target.port,
        f" (upgrade rehearsal: {rehearsal.describe()})" if rehearsal else "",
    )
    base_sets = list_catalog(store, cluster.name, BackupKind.BASE).sets if request.mode.physical else ()
    return plan_for_set(request, backup_set, base_sets, scratch=scratch, staging=staging, upgrade_rehearsal=rehearsal)
