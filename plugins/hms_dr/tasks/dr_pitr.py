"""Task callables of hms_dr_pitr: validate the request (and the engine's recovery plan) before
anything is created, recover into a new cluster, tell the operator how to connect and what the
RTO was, and write the run's outcome to the audit trail whatever happened.

Every task of this DAG runs on the database-host queue (``wal.spool_queue``): the data directory
and the port it checks and uses are that host's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr.policy import load_policy
from hms_dr.scratch.workdir import WorkPurpose, work_folder
from hms_dr.tasks.audit import FAILURE_KEY, audit_event, run_queued_at, records_failure
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

log = logging.getLogger(__name__)

STEP_TASK_IDS = ("validate_request", "recover_cluster", "report_connection")




@task
@records_failure
@engine_errors_decide_retry
def validate_request() -> dict[str, Any]:
    """Every param again (the trigger form checked their shapes), then this host (data directory
    new or empty below an allowed root, port free) and the engine's recovery plan (a base backup
    old enough, WAL new enough, no gap), then the "started" audit record. Nothing is created."""
    from hms_dr.physical.recovery import check_recovery
    from hms_dr.physical.request import check_pitr_host, read_pitr_request, refuse_short_space

    context = get_current_context()
    params = run_params(context)
    policy = load_policy()
    dr = policy.dr
    request = read_pitr_request(
        params, allowed_roots=dr.allowed_data_roots, port_range=dr.pitr_port_range, now=datetime.now(timezone.utc)
    )
    request = check_pitr_host(request, allowed_roots=dr.allowed_data_roots, port_range=dr.pitr_port_range)
    plan = check_recovery(
        open_policy_store(policy), policy.cluster.name, request.target, decryption_key=decryption_key(policy),
        staging_dir=work_folder(policy.staging.dir, WorkPurpose.PITR), backup_set_id=request.backup_set_id,
    )
    free_bytes = refuse_short_space(request.data_dir, int(plan["base_plain_bytes"]))
    validated = {**request.to_dict(), "plan": plan, "free_bytes": free_bytes}
    log.info(
        "point-in-time recovery of %s to %s into %s on port %d: base backup set %s (%s), %d WAL file(s)",
        policy.cluster.name, request.target.describe(), request.data_dir, request.port, plan["backup_set_id"],
        plan["plan_reason"], plan["wal_files"],
    )
    audit_event(context, params, "started", details={"request": validated})
    return validated


@task
@records_failure
@engine_errors_decide_retry
def recover_cluster(request: dict[str, Any]) -> dict[str, Any]:
    """The recovery engine: base backup proven and extracted, WAL replayed to the target, the new
    cluster promoted (or paused at the target) on 127.0.0.1:<port>; production is not touched."""
    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import parse_recovery_target

    policy = load_policy()
    target = request["target"]
    return recover(
        open_policy_store(policy),
        policy.cluster.name,
        parse_recovery_target(target["kind"], target["value"], inclusive=bool(target.get("inclusive", True))),
        data_dir=Path(request["data_dir"]),
        port=int(request["port"]),
        decryption_key=decryption_key(policy),
        staging_dir=work_folder(policy.staging.dir, WorkPurpose.PITR),
        backup_set_id=request["plan"]["backup_set_id"],  # the set validated and audited, even if a newer one arrived since
        timeout_s=max(60.0, policy.dr.pitr_execution_timeout_min * 60 - 60),
        promote=bool(request["promote"]),
    )


@task
@records_failure
@engine_errors_decide_retry
def report_connection(request: dict[str, Any], recovered: dict[str, Any]) -> dict[str, Any]:
    """How to connect to the new cluster, and the RTO: from the run's trigger to promotion."""
    from hms_dr.physical.request import describe_recovered_cluster

    context = get_current_context()
    policy = load_policy()
    production = database_connection(policy.cluster.connection_id, policy.cluster.database)
    report = describe_recovered_cluster(
        recovered, database=production.dbname, user=production.user, queued_at=run_queued_at(context["dag_run"]),
        rto_target_s=policy.rto_minutes * 60,
    )
    for line in report["lines"]:
        log.info("%s", line)
    if not report["within_rto"]:
        log.warning("RTO %.0f s is over the target of %d s", report["rto_s"], report["rto_target_s"])
    return report


@task
def record_outcome() -> str:
    """Teardown: the audit record of how the run ended (succeeded, or failed with the first
    failing step's reason), written whatever happened before it."""
    context = get_current_context()
    ti = context["ti"]
    params = dict(context["params"])
    reported = ti.xcom_pull(task_ids="report_connection")
    failures = [(task_id, ti.xcom_pull(task_ids=task_id, key=FAILURE_KEY)) for task_id in STEP_TASK_IDS]
    failed = [(task_id, line) for task_id, line in failures if line]
    if reported and not failed:
        outcome = f"{reported['state']} on 127.0.0.1:{reported['port']} ({reported['data_dir']}), RTO {reported['rto_s']:.0f} s"
        audit_event(context, params, "succeeded", outcome, details={"report": {k: v for k, v in reported.items() if k != "lines"}})
        return outcome
    if failed:
        task_id, line = failed[0]
        outcome = f"{task_id}: {line}"
    else:
        outcome = "a step did not finish (killed, timed out or skipped): see the run's task logs"
    audit_event(context, params, "failed", outcome, details={"request": ti.xcom_pull(task_ids="validate_request")})
    return outcome
