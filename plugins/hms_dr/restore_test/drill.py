"""The restore test's physical drill: the newest base backup that reaches the daily set's
snapshot LSN recovered (point in time, promoted) into a throw-away cluster, checked against the
daily set's baselines (so the logical and the physical backups verify each other), stopped and
its every block's checksum verified (``hms_dr.physical.drill``), and removed whatever happened.

The recovered cluster is a copy of production (same roles, same passwords), started on
127.0.0.1 only with archiving off; the checks connect to it as the backup role.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hms_dr.policy import ClusterPolicy, RestoreTestPolicy, StagingPolicy
from hms_dr.restore_test.records import (
    DrillPlan,
    OfflineChecksums,
    RecoveredCluster,
    RestoreTestPart,
    RestoreTestPlan,
    RestoreTestReport,
)
from hms_dr.restore_test.report import Announce, RestoredCopy, check_and_report
from hms_dr.scratch.cluster import remove_scratch_cluster
from hms_dr.scratch.workdir import WorkPurpose, work_folder

if TYPE_CHECKING:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.pgtools import ConnectionInfo
    from hms_dr.store import Store

# The recovery engine (psycopg, the WAL source) is imported inside the functions: the DAG files
# import the edge, which imports this module, and the DAG processor must parse them fast.

log = logging.getLogger(__name__)


def _drill_plan(plan: RestoreTestPlan) -> DrillPlan:
    if plan.physical is None:
        raise ValueError(f"the plan of {plan.backup_set_id} (mode {plan.mode.value}) has no physical drill")
    return plan.physical


def recover_for_drill(
    plan: RestoreTestPlan, *, store: Store, cluster: ClusterPolicy, staging: StagingPolicy, key: DecryptionKey
) -> RecoveredCluster:
    """PITR of the newest base backup that reaches the daily set's snapshot LSN, promoted."""
    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import parse_recovery_target
    from hms_dr.server_user import free_port

    drill_plan = _drill_plan(plan)
    started_at = datetime.now(UTC)
    recovered = recover(
        store,
        cluster.name,
        parse_recovery_target("lsn", drill_plan.target_lsn),
        data_dir=drill_plan.data_dir,
        port=free_port(),
        decryption_key=key,
        staging_dir=work_folder(staging.dir, WorkPurpose.RESTORE_TEST),
        socket_dir=drill_plan.socket_dir,
        log_file=drill_plan.log_file,
    )
    return RecoveredCluster(
        started_at=started_at,
        port=int(recovered["port"]),
        data_dir=Path(recovered["data_dir"]),
        socket_dir=Path(recovered["socket_dir"]),
        log_file=Path(recovered["log_file"]),
        base_backup_set_id=str(recovered["backup_set_id"]),
        timeline=int(recovered["timeline"]),
        recovery_end_lsn=recovered["recovery_end_lsn"],
        seconds=dict(recovered["seconds"]),
    )


def check_recovered_cluster(
    plan: RestoreTestPlan,
    recovered: RecoveredCluster,
    *,
    backup_role: ConnectionInfo,
    store: Store,
    cluster: ClusterPolicy,
    restore_test: RestoreTestPolicy,
    staging: StagingPolicy,
    rto_minutes: int,
    announce: Announce,
) -> RestoreTestReport:
    """The same checks as the logical restore's, on the recovered cluster, as ``backup_role``
    (production's backup role: the cluster is a copy of production)."""
    recovered_db = backup_role.with_endpoint("127.0.0.1", recovered.port)
    seconds = recovered.seconds
    copy = RestoredCopy(
        RestoreTestPart.PHYSICAL,
        recovered_db.libpq_dsn(),
        recovered.started_at,
        {
            "restore_base_backup": seconds.get("restore_base_backup", 0.0),
            "replay_and_promote": seconds.get("replay_and_promote", 0.0),
        },
        base_backup_set_id=recovered.base_backup_set_id,
        target_lsn=_drill_plan(plan).target_lsn,
        timeline=recovered.timeline,
        recovery_end_lsn=recovered.recovery_end_lsn,
    )
    return check_and_report(
        plan,
        copy,
        store=store,
        cluster=cluster,
        restore_test=restore_test,
        staging=staging,
        rto_minutes=rto_minutes,
        announce=announce,
    )


def verify_checksums_offline(recovered: RecoveredCluster) -> OfflineChecksums:
    """Stop the recovered server, then pg_checksums --check every block (the runbook's offline check).

    :raises DataCorruption: a block's checksum does not match.
    """
    from hms_dr.physical import drill as physical_drill

    return OfflineChecksums.from_xcom(physical_drill.check_checksums_offline(recovered.server_record()))


def remove_drill_cluster(plan: RestoreTestPlan | None) -> str:
    """Teardown: stop and delete the drill's cluster whether the drill passed or failed (unless kept)."""
    drill_plan = plan.physical if plan is not None else None
    if drill_plan is None:
        return "no physical drill was planned"
    if plan is not None and plan.keep_scratch:
        log.warning(
            "keep_scratch is set: the recovered cluster in %s is left (stop it with pg_ctl -D ... stop)",
            drill_plan.data_dir,
        )
        return f"kept {drill_plan.data_dir}"
    removed = remove_scratch_cluster(drill_plan.cluster)
    return f"removed {', '.join(removed)}" if removed else "nothing to remove"
