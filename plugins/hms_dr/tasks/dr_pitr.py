"""Task callables of hms_dr_pitr: validate the request (and the engine's recovery plan) before
anything is created, recover into a new cluster, tell the operator how to connect and what the
RTO was, and write the run's outcome to the audit trail whatever happened.

Every task of this DAG runs on the database-host queue (``wal.spool_queue``): the data directory
and the port it checks and uses are that host's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr.policy import load_policy
from hms_dr.tasks.audit import FAILURE_KEY, audit_event, records_failure, run_queued_at
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

# The engine is imported inside the task callables: parsing the DAG file loads none of it.

log = logging.getLogger(__name__)

STEP_TASK_IDS = ("validate_request", "recover_cluster", "report_connection")


@task
@records_failure
@engine_errors_decide_retry
def validate_request() -> dict[str, Any]:
    """Every param again (the trigger form checked their shapes), then this host (data directory
    new or empty below an allowed root, port free) and the engine's recovery plan (a base backup
    old enough, WAL new enough, no gap), then the "started" audit record. Nothing is created."""
    from hms_dr.dr.pitr import validate_pitr

    context = get_current_context()
    params = run_params(context)
    policy = load_policy()
    validated = validate_pitr(
        params,
        cluster_name=policy.cluster.name,
        dr=policy.dr,
        staging=policy.staging,
        store=lambda: open_policy_store(policy),
        decryption_key=lambda: decryption_key(policy),
        now=datetime.now(UTC),
    ).to_xcom()
    audit_event(context, params, "started", details={"request": validated})
    return validated


@task
@records_failure
@engine_errors_decide_retry
def recover_cluster(request: dict[str, Any]) -> dict[str, Any]:
    """The recovery engine: base backup proven and extracted, WAL replayed to the target, the new
    cluster promoted (or paused at the target) on 127.0.0.1:<port>; production is not touched."""
    from hms_dr.dr.pitr import PitrPlan, recover_new_cluster

    policy = load_policy()
    return recover_new_cluster(
        PitrPlan.from_xcom(request),
        store=open_policy_store(policy),
        cluster_name=policy.cluster.name,
        dr=policy.dr,
        staging=policy.staging,
        decryption_key=decryption_key(policy),
    )


@task
@records_failure
@engine_errors_decide_retry
def report_connection(request: dict[str, Any], recovered: dict[str, Any]) -> dict[str, Any]:
    """How to connect to the new cluster, and the RTO: from the run's trigger to promotion."""
    from hms_dr.dr.pitr import report_recovered_cluster

    context = get_current_context()
    policy = load_policy()
    production = database_connection(policy.cluster.connection_id, policy.cluster.database)
    return report_recovered_cluster(
        recovered,
        database=production.dbname,
        user=production.user,
        queued_at=run_queued_at(context["dag_run"]),
        rto_minutes=policy.rto_minutes,
    ).to_xcom()


@task
def record_outcome() -> str:
    """Teardown: the audit record of how the run ended (succeeded, or failed with the first
    failing step's reason), written whatever happened before it."""
    from hms_dr.dr.outcome import pitr_outcome
    from hms_dr.dr.pitr import PitrPlan, PitrReport

    context = get_current_context()
    ti = context["ti"]
    requested = ti.xcom_pull(task_ids="validate_request")
    reported = ti.xcom_pull(task_ids="report_connection")
    ended = pitr_outcome(
        plan=PitrPlan.from_xcom(requested) if requested else None,
        reported=PitrReport.from_xcom(reported) if reported else None,
        failures=[(task_id, ti.xcom_pull(task_ids=task_id, key=FAILURE_KEY)) for task_id in STEP_TASK_IDS],
    )
    audit_event(context, dict(context["params"]), ended.event, ended.outcome, details=ended.details)
    return ended.outcome
