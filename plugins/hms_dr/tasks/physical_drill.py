"""Task callables of hms_restore_test's physical drill: recover the newest base backup that
reaches the daily set's snapshot LSN into a throw-away cluster, check it against the daily
set's baselines, stop it and verify every block's checksum, and remove it whatever happened.

Each task calls one function of the engine's ``hms_dr.restore_test.drill`` and returns its record.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from hms_dr.policy import load_policy
from hms_dr.restore_test import drill
from hms_dr.restore_test.records import RecoveredCluster, RestoreTestPart, RestoreTestPlan
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.restore_test import announce_report, skip_unless


@task
@engine_errors_decide_retry
def recover_for_drill(plan: dict[str, Any]) -> dict[str, Any]:
    """PITR of the newest base backup that reaches the daily set's snapshot LSN, promoted."""
    planned = RestoreTestPlan.from_xcom(plan)
    skip_unless(planned, RestoreTestPart.PHYSICAL)
    policy = load_policy()
    return drill.recover_for_drill(
        planned,
        store=open_policy_store(policy),
        cluster=policy.cluster,
        staging=policy.staging,
        key=decryption_key(policy),
    ).to_xcom()


@task
@engine_errors_decide_retry
def check_recovered_cluster(plan: dict[str, Any], recovered: dict[str, Any]) -> dict[str, Any]:
    """The same Great Expectations checks as the logical restore, on the recovered cluster."""
    planned = RestoreTestPlan.from_xcom(plan)
    skip_unless(planned, RestoreTestPart.PHYSICAL)
    policy = load_policy()
    return drill.check_recovered_cluster(
        planned,
        RecoveredCluster.from_xcom(recovered),
        backup_role=database_connection(policy.cluster.connection_id, policy.cluster.database),
        store=open_policy_store(policy),
        cluster=policy.cluster,
        restore_test=policy.restore_test,
        staging=policy.staging,
        rto_minutes=policy.rto_minutes,
        announce=announce_report,
    ).to_xcom()


@task
@engine_errors_decide_retry
def verify_checksums_offline(plan: dict[str, Any], recovered: dict[str, Any]) -> dict[str, Any]:
    """Stop the recovered server, then pg_checksums --check every block (the runbook's offline check)."""
    skip_unless(RestoreTestPlan.from_xcom(plan), RestoreTestPart.PHYSICAL)
    return drill.verify_checksums_offline(RecoveredCluster.from_xcom(recovered)).to_xcom()


@task
@engine_errors_decide_retry
def remove_recovered_cluster(plan: dict[str, Any] | None) -> str:
    """Teardown: stop and delete the drill's cluster whether the drill passed or failed (unless kept)."""
    return drill.remove_drill_cluster(RestoreTestPlan.from_xcom(plan) if plan else None)
