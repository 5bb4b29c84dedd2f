"""The first step of hms_dr_restore: the request checked against everything it names, before
anything is created — the params (``request.parse_request``), the production connection (it
must reach the production cluster), the backup set (exists and is complete, i.e. has its
manifest) and its tables, the restore server (never production), the target (a new staging
schema, or a database that is not production and holds nothing), the recovery plan of a point in
time (a base backup before the target, WAL up to it, no gap), and whether a swap is possible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr import sqlfiles
from hms_dr.catalog import find_requested_set
from hms_dr.database import connect
from hms_dr.dr.request import RestorePlan, Source, TargetFacts, TargetKind, parse_request, resolve_request, run_key
from hms_dr.dr.validated import RecoveryPlanCheck, ValidatedRestore
from hms_dr.errors import PreflightFailed, SwapRefused
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.scratch.cluster import ScratchCluster, dr_scratch_cluster
from hms_dr.scratch.database import (
    ScratchDatabaseKind,
    refuse_production_target,
    scratch_database_name,
    system_identifier,
)
from hms_dr.scratch.workdir import WorkPurpose, work_folder

if TYPE_CHECKING:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import ClusterPolicy, DrPolicy, StagingPolicy
    from hms_dr.store import Store

log = logging.getLogger(__name__)


def work_dir(staging: StagingPolicy, run_key: str | None = None) -> Path:
    """Where DR restores keep their (short-lived, private) files: fetched dumps, WAL, reports."""
    return work_folder(staging.dir, WorkPurpose.DR_RESTORE, run_key)


def scratch_cluster_for(dr: DrPolicy, staging: StagingPolicy, key: str) -> ScratchCluster:
    """Below the first of ``dr.allowed_data_roots`` (a volume meant for whole clusters), else staging."""
    roots = dr.allowed_data_roots
    return dr_scratch_cluster(roots[0] if roots else staging.dir, key)


def validate_restore(
    params: dict[str, Any],
    *,
    run_id: str,
    cluster: ClusterPolicy,
    dr: DrPolicy,
    staging: StagingPolicy,
    backup_schemas: Sequence[str],
    store: Store,
    production: ConnectionInfo,
    admin: ConnectionInfo,
    admin_connection_id: str,
    restore_target: Callable[[], ConnectionInfo],
    decryption_key: Callable[[], DecryptionKey],
    now: datetime | None = None,
) -> ValidatedRestore:
    """The validated plan, or the one-line error of the first thing that does not hold.
    ``backup_schemas`` are the schemas the logical backup covers (production's tables in scope).
    What the operator can fix by asking differently is RequestRefused; the system's own problems
    (a connection that reaches the wrong cluster, an unreadable store) keep their classes and page."""
    request = parse_request(params, run_id=run_id, now=now or datetime.now(UTC))
    production_id = system_identifier(production)
    if system_identifier(admin) != production_id:
        raise PreflightFailed(
            f"connection {admin_connection_id!r} ({admin.describe()}) does not reach the production cluster that "
            f"{cluster.connection_id!r} reaches: refused"
        )
    key = run_key(run_id)
    backup_set_id: str | None = None
    set_tables: list[str] | None = None
    scratch_database: str | None = None
    if request.source is Source.LOGICAL_BACKUP:
        backup_set = find_requested_set(store, cluster.name, BackupKind.LOGICAL, request.backup_id)
        backup_set_id = backup_set.backup_set_id
        set_tables = sorted(backup_set.manifest.baselines.get("tables", {}))
        where = f"backup set {backup_set_id}"
        target = restore_target()
        scratch_database = scratch_database_name(ScratchDatabaseKind.DR_SOURCE, key)
        refuse_production_target(
            target=target,
            production=production,
            scratch_name=scratch_database,
            target_system_id=system_identifier(target),
            production_system_id=production_id,
        )
    else:
        where = f"production's database {cluster.database}"
    facts = target_facts(
        admin, request.target_kind, request.target_database, database=cluster.database, backup_schemas=backup_schemas
    )
    plan = resolve_request(request, facts, set_tables=set_tables, backup_set_id=backup_set_id, where=where)
    recovery = (
        check_point_in_time(cluster, staging, store, plan, decryption_key())
        if request.source is Source.POINT_IN_TIME
        else None
    )
    if request.swap_into_production:
        from hms_dr.dr.swap import production_refusals

        refusals = production_refusals(admin, plan.tables)
        if refusals:
            raise SwapRefused(f"the swap would not be possible: {'; '.join(refusals)}")
    return ValidatedRestore.of(
        plan,
        run_key=key,
        scratch_database=scratch_database,
        scratch_cluster=scratch_cluster_for(dr, staging, key).to_dict()
        if request.source is Source.POINT_IN_TIME
        else None,
        recovery_plan=recovery,
    )


def target_facts(
    admin: ConnectionInfo,
    kind: TargetKind,
    target_database: str | None,
    *,
    database: str,
    backup_schemas: Sequence[str],
) -> TargetFacts:
    """Production's tables (in the schemas the logical backup covers) and schemas, and whether
    the new database exists and holds anything."""
    with connect(admin) as connection:
        rows = connection.execute(sqlfiles.text("tables_in_scope"), {"schemas": list(backup_schemas)}).fetchall()
        tables = frozenset(f"{r[0]}.{r[1]}" for r in rows)
        schemas = frozenset(
            str(r[0]) for r in connection.execute("SELECT nspname FROM pg_catalog.pg_namespace").fetchall()
        )
        exists = False
        if kind is TargetKind.NEW_DATABASE and target_database:
            exists = (
                connection.execute(
                    "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (target_database,)
                ).fetchone()
                is not None
            )
    holding = 0
    if exists and target_database and target_database != database:
        with connect(admin.with_database(target_database)) as connection:
            holding = int(connection.execute(sqlfiles.text("dr/user_relations")).fetchone()[0])
    return TargetFacts(database, tables, schemas, exists, holding)


def check_point_in_time(
    cluster: ClusterPolicy, staging: StagingPolicy, store: Store, plan: RestorePlan, key: DecryptionKey
) -> RecoveryPlanCheck:
    """The recovery plan (base backup, WAL to the target, no gap), decided as recover() will."""
    from hms_dr.physical.recovery import check_recovery
    from hms_dr.physical.targets import parse_recovery_target

    target = plan.request.recovery_target or {}
    checked = check_recovery(
        store,
        cluster.name,
        parse_recovery_target(str(target["kind"]), target.get("value"), inclusive=bool(target.get("inclusive", True))),
        decryption_key=key,
        staging_dir=work_dir(staging),
        backup_set_id=None if plan.request.backup_id == "latest" else plan.request.backup_id,
    )
    return RecoveryPlanCheck(
        target=dict(target),
        backup_set_id=str(checked["backup_set_id"]),
        plan_reason=str(checked["plan_reason"]),
        wal_files=int(checked["wal_files"]),
        chain=tuple(str(set_id) for set_id in checked.get("chain") or (checked["backup_set_id"],)),
        plan_warnings=tuple(str(line) for line in checked.get("plan_warnings") or ()),
    )
