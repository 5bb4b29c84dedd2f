"""The source a DR restore takes its tables from, chosen, built and removed here.

A logical backup set's source is a scratch database on the isolated restore server, the whole set
restored into it; a point in time's is a scratch cluster recovered to that point on this worker
(below the first of ``dr.allowed_data_roots``, else staging) on a free port of
``dr.pitr_port_range``. Both are disposable: the restore removes its source when done, and the
run's teardown (``remove_source``) removes whatever is left, so both run on the same host.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hms_dr import restore
from hms_dr.catalog import find_set
from hms_dr.dr.request import Source
from hms_dr.dr.validate import scratch_cluster_for, work_dir
from hms_dr.dr.validated import ValidatedRestore
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.scratch import cluster as scratch_clusters
from hms_dr.scratch import database as scratch_databases
from hms_dr.scratch.cluster import ScratchCluster

if TYPE_CHECKING:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import ClusterPolicy, DrPolicy, DrRestorePolicy, StagingPolicy
    from hms_dr.store import Store

log = logging.getLogger(__name__)

RECOVERY_FIELDS = (
    "backup_set_id",
    "timeline",
    "recovery_end_lsn",
    "recovery_end_reason",
    "recovery_end_time",
    "seconds",
)


@dataclass(frozen=True)
class ScratchDatabase:
    """A scratch database on the restore server, named by the validated plan."""

    name: str


def scratch_for(plan: ValidatedRestore, *, dr: DrPolicy, staging: StagingPolicy) -> ScratchDatabase | ScratchCluster:
    """The source's scratch: a database on the restore server for a logical set, a cluster on this
    worker for a point in time."""
    if plan.source is Source.LOGICAL_BACKUP:
        if not plan.scratch_database:
            raise ValueError("a logical backup restore's plan names its scratch database")
        return ScratchDatabase(plan.scratch_database)
    return scratch_cluster_for(dr, staging, plan.run_key)


@dataclass(frozen=True)
class BuiltSource:
    """A source ready for the copy, and how to remove it."""

    connection: ConnectionInfo  # secret-bearing: never logged, never in XCom
    description: str  # one line, for the restore's record
    step: str  # the step's name in the restore's timings
    seconds: float
    recovery: dict[str, Any] | None  # point in time: what the recovery reached
    remove: Callable[[], None]


def build_source(
    plan: ValidatedRestore,
    *,
    store: Store,
    cluster: ClusterPolicy,
    dr: DrPolicy,
    restore_settings: DrRestorePolicy,
    staging: StagingPolicy,
    admin: ConnectionInfo,
    restore_target: Callable[[], ConnectionInfo],
    decryption_key: DecryptionKey,
) -> BuiltSource:
    """The disposable source database (see the module docstring); nothing is left behind when
    building it fails."""
    started = datetime.now(UTC)
    scratch = scratch_for(plan, dr=dr, staging=staging)
    if isinstance(scratch, ScratchDatabase):
        server = restore_target()
        assert plan.backup_set_id is not None
        backup_set = find_set(store, cluster.name, BackupKind.LOGICAL, plan.backup_set_id)
        workdir = work_dir(staging, plan.run_key)
        try:
            fetched = restore.fetch_for_restore(
                store, backup_set, decryption_key, workdir, jobs=restore_settings.restore_jobs
            )
            scratch_databases.create_scratch_database(server, scratch.name)
            restore.run_pg_restore(
                server.with_database(scratch.name),
                fetched.path,
                jobs=restore_settings.restore_jobs,
                expected_bytes=restore.source_database_size(backup_set),
            )
        except BaseException:
            _drop_quietly(server, scratch.name)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # the decrypted dump never outlives the task
        return BuiltSource(
            connection=server.with_database(scratch.name),
            description=f"scratch database {scratch.name} on {server.host}:{server.port} from set {backup_set.backup_set_id}",
            step="restore_scratch_database",
            seconds=_since(started),
            recovery=None,
            remove=lambda: _drop_quietly(server, scratch.name),
        )
    return _recover_scratch_cluster(
        plan,
        scratch,
        started,
        store=store,
        cluster=cluster,
        dr=dr,
        staging=staging,
        admin=admin,
        decryption_key=decryption_key,
    )


def _recover_scratch_cluster(
    plan: ValidatedRestore,
    scratch: ScratchCluster,
    started: datetime,
    *,
    store: Store,
    cluster: ClusterPolicy,
    dr: DrPolicy,
    staging: StagingPolicy,
    admin: ConnectionInfo,
    decryption_key: DecryptionKey,
) -> BuiltSource:
    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import parse_recovery_target

    scratch_clusters.remove_scratch_cluster(scratch)  # leftovers of an earlier try of this run
    first, last = dr.pitr_port_range
    port = scratch_clusters.free_port_in(first, last)
    target = plan.recovery_target or {}
    try:
        recovered = recover(
            store,
            cluster.name,
            parse_recovery_target(
                str(target["kind"]), target.get("value"), inclusive=bool(target.get("inclusive", True))
            ),
            data_dir=scratch.data_dir,
            port=port,
            decryption_key=decryption_key,
            staging_dir=work_dir(staging),
            backup_set_id=plan.recovery_plan.backup_set_id if plan.recovery_plan else None,
            socket_dir=scratch.socket_dir,
            log_file=scratch.log_file,
        )
    except BaseException:
        scratch_clusters.remove_scratch_cluster(scratch)
        raise
    return BuiltSource(
        # The recovered cluster is production as it was: its roles and passwords are production's.
        connection=ConnectionInfo("127.0.0.1", port, admin.user, cluster.database, admin.password),
        description=f"scratch cluster on 127.0.0.1:{port} recovered to {target['kind']} {target.get('value')}",
        step="recover_scratch_cluster",
        seconds=_since(started),
        recovery={name: recovered.get(name) for name in RECOVERY_FIELDS},
        remove=lambda: _remove_cluster(scratch),
    )


def remove_source(
    plan: ValidatedRestore | None, *, dr: DrPolicy, staging: StagingPolicy, restore_target: Callable[[], ConnectionInfo]
) -> str:
    """The teardown: the scratch database or cluster goes, whatever happened (normally the
    restore removed it already). One line saying what was done."""
    if plan is None:
        return "nothing planned"
    if plan.scratch_database:
        existed = scratch_databases.drop_scratch_database(restore_target(), plan.scratch_database)
        return f"dropped {plan.scratch_database}" if existed else f"{plan.scratch_database} already gone"
    if plan.scratch_cluster:
        removed = scratch_clusters.remove_scratch_cluster(scratch_cluster_for(dr, staging, plan.run_key))
        return f"removed the scratch cluster ({', '.join(removed)})" if removed else "scratch cluster already gone"
    return "nothing to remove"


def _remove_cluster(scratch: ScratchCluster) -> None:
    scratch_clusters.remove_scratch_cluster(scratch)


def _drop_quietly(server: ConnectionInfo, name: str) -> None:
    try:
        scratch_databases.drop_scratch_database(server, name)
    except Exception as exc:  # the teardown tries again; the restore's own outcome stands
        log.warning("scratch database %s not dropped now (the teardown retries): %s", name, exc)


def _since(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()
