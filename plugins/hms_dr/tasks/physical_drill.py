"""Task callables of hms_restore_test's physical drill: recover the newest base backup that
reaches the daily set's snapshot LSN into a throw-away cluster, check it against the daily
set's baselines, stop it and verify every block's checksum, and remove it whatever happened.

The recovered cluster is a copy of production (same roles, same passwords), started on
127.0.0.1 only with archiving off; the checks connect to it as the backup role.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

from hms_dr.errors import NoBackupForTarget
from hms_dr.policy import Policy, load_policy
from hms_dr.scratch.cluster import ScratchCluster, drill_scratch_cluster, remove_scratch_cluster
from hms_dr.scratch.workdir import WorkPurpose, work_folder
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.restore_checks import check_and_report, skip_unless

if TYPE_CHECKING:
    from hms_dr.catalog import BackupSet
    from hms_dr.store import Store

# The recovery engine (psycopg, the WAL source) is imported inside the tasks: DAG files import
# this module, and the DAG processor must parse them fast.

log = logging.getLogger(__name__)


def plan_drill(store: Store, policy: Policy, backup_set: BackupSet, scratch: str) -> dict[str, Any]:
    """Where the drill's cluster goes and which LSN it recovers to (the daily set's snapshot)."""
    snapshot = backup_set.manifest.body.get("snapshot") or {}
    if not snapshot.get("wal_lsn"):
        raise NoBackupForTarget(f"daily set {backup_set.backup_set_id} records no snapshot LSN: the physical drill cannot target it")
    cluster = drill_scratch_cluster(policy.staging.dir, scratch)
    return {"target_lsn": snapshot["wal_lsn"], **cluster.to_dict()}


@task
@engine_errors_decide_retry
def recover_for_drill(plan: dict[str, Any]) -> dict[str, Any]:
    """PITR of the newest base backup that reaches the daily set's snapshot LSN, promoted."""
    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import parse_recovery_target
    from hms_dr.server_user import free_port

    skip_unless(plan, "physical")
    policy = load_policy()
    drill_plan = plan["physical"]
    started_at = datetime.now(timezone.utc)
    recovered = recover(
        open_policy_store(policy), policy.cluster.name, parse_recovery_target("lsn", drill_plan["target_lsn"]),
        data_dir=Path(drill_plan["data_dir"]), port=free_port(), decryption_key=decryption_key(policy),
        staging_dir=work_folder(policy.staging.dir, WorkPurpose.RESTORE_TEST),
        socket_dir=Path(drill_plan["socket_dir"]), log_file=Path(drill_plan["log_file"]),
    )
    return {
        "started_at": started_at.isoformat(),
        "port": recovered["port"],
        "data_dir": recovered["data_dir"],
        "socket_dir": recovered["socket_dir"],
        "log_file": recovered["log_file"],
        "base_backup_set_id": recovered["backup_set_id"],
        "timeline": recovered["timeline"],
        "recovery_end_lsn": recovered["recovery_end_lsn"],
        "seconds": recovered["seconds"],
    }


@task
@engine_errors_decide_retry
def check_recovered_cluster(plan: dict[str, Any], recovered: dict[str, Any]) -> dict[str, Any]:
    """The same Great Expectations checks as the logical restore, on the recovered cluster."""
    skip_unless(plan, "physical")
    policy = load_policy()
    backup_role = database_connection(policy.cluster.connection_id, policy.cluster.database)
    recovered_db = backup_role.with_endpoint("127.0.0.1", int(recovered["port"]))
    seconds = recovered["seconds"]
    return check_and_report(
        plan, recovered_db.libpq_dsn(), started_at=recovered["started_at"],
        steps_s={"restore_base_backup": seconds.get("restore_base_backup", 0.0), "replay_and_promote": seconds.get("replay_and_promote", 0.0)},
        what={
            "mode": "physical", "base_backup_set_id": recovered["base_backup_set_id"], "target_lsn": plan["physical"]["target_lsn"],
            "timeline": recovered["timeline"], "recovery_end_lsn": recovered["recovery_end_lsn"],
        },
    )


@task
@engine_errors_decide_retry
def verify_checksums_offline(plan: dict[str, Any], recovered: dict[str, Any]) -> dict[str, Any]:
    """Stop the recovered server, then pg_checksums --check every block (the runbook's offline check)."""
    from hms_dr.physical import drill

    skip_unless(plan, "physical")
    return drill.check_checksums_offline(recovered)


@task
@engine_errors_decide_retry
def remove_recovered_cluster(plan: dict[str, Any] | None) -> str:
    """Teardown: stop and delete the drill's cluster whether the drill passed or failed (unless kept)."""
    drill_plan = (plan or {}).get("physical")
    if not drill_plan:
        return "no physical drill was planned"
    if plan and plan.get("keep_scratch"):
        log.warning("keep_scratch is set: the recovered cluster in %s is left (stop it with pg_ctl -D ... stop)", drill_plan["data_dir"])
        return f"kept {drill_plan['data_dir']}"
    removed = remove_scratch_cluster(ScratchCluster.from_dict(drill_plan))
    return f"removed {', '.join(removed)}" if removed else "nothing to remove"
