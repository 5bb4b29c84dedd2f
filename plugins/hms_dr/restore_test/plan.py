"""Planning a restore test: the request read from the run's params, the set found, the scratch
names, and the mode this store can serve (logical only, saying why, while no base backup reaches
the set: a new install before its first weekly base backup).

A set the operator named and the store lacks is the request's fault (RequestRefused, no page); one
a new-set event named, or "latest" with none at all, is the system's and pages. The restore target
must not be production: same database, or the same cluster by its system identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr import patterns
from hms_dr.catalog import BackupSet, find_requested_set, find_set, list_catalog
from hms_dr.errors import NoBackupForTarget, ParamInvalid, RequestRefused
from hms_dr.manifest import BackupKind
from hms_dr.patterns import matcher
from hms_dr.physical.drill_mode import choose_drill_mode
from hms_dr.policy import ClusterPolicy, RestoreTestMode, RestoreTestPolicy, StagingPolicy
from hms_dr.restore_test.records import DrillPlan, RestoreTestPlan
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
    """What a run asks for, checked: the set (as named, and as resolved), jobs, mode, keep_scratch."""

    named: str  # "latest" or a set id, as the params say
    backup_id: str  # the set id to find ("latest": the newest, unless a new-set event names one)
    restore_jobs: int
    keep_scratch: bool
    mode: RestoreTestMode

    @property
    def operator_named_the_set(self) -> bool:
        return self.named != LATEST


def read_request(
    params: Mapping[str, Any], *, triggered_set_id: str | None, default_mode: RestoreTestMode
) -> RestoreTestRequest:
    """The run's params, checked. ``triggered_set_id``: the set of the new-set event behind this
    run, if any; it stands for "latest".

    :raises RequestRefused: a malformed backup_id, restore_jobs out of 1..16, an unknown mode.
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
    return RestoreTestRequest(named, backup_id, jobs, bool(params.get("keep_scratch")), mode)


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
) -> RestoreTestPlan:
    """Check the request, find the set, refuse a restore target that is production, and plan the run."""
    request = read_request(params, triggered_set_id=triggered_set_id, default_mode=restore_test.mode)
    find = find_requested_set if request.operator_named_the_set else find_set
    backup_set = find(store, cluster.name, BackupKind.LOGICAL, request.backup_id)
    scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, backup_set.backup_set_id)
    refuse_production_target(
        target=target,
        production=production,
        scratch_name=scratch,
        target_system_id=system_identifier(target),
        production_system_id=system_identifier(production),
    )
    log.info(
        "restore test of %s set %s (%s) into scratch database %s on %s:%s",
        backup_set.kind.value,
        backup_set.backup_set_id,
        store.describe(backup_set.manifest_key),
        scratch,
        target.host,
        target.port,
    )
    base_sets = list_catalog(store, cluster.name, BackupKind.BASE).sets if request.mode.physical else ()
    return plan_for_set(request, backup_set, base_sets, scratch=scratch, staging=staging)
