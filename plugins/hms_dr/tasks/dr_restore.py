"""Task callables of hms_dr_restore: validate the request, restore the tables into production's
staging schema (or a new database), check them, ask for approval, swap, check production, and
write the audit trail whatever happened.

The production connection is ``dr.restore.admin_connection_id`` (default ``hms_admin``): the
backup role only reads. The logical path restores into a scratch database on the isolated
restore server (``hms_restore_target``); the point-in-time path recovers a scratch cluster on
this worker. Both tasks that touch that scratch (the restore and its teardown) run on the
database-host queue (``wal.spool_queue``), so the teardown finds what the restore started.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import get_current_context, task

from hms_dr import restore
from hms_dr.audit import Approval
from hms_dr.catalog import find_set
from hms_dr.dr import staging
from hms_dr.dr.request import Source, TableName, TargetKind
from hms_dr.dr.report import describe_source
from hms_dr.dr.settings import DrRestorePolicy, dr_restore_policy
from hms_dr.dr.validate import scratch_cluster_for, work_dir
from hms_dr.errors import QualityCheckFailed, SwapRefused
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import Policy, load_policy
from hms_dr.policy_dr import DrPolicy
from hms_dr.tasks.audit import FAILURE_KEY, audit_event, triggered_by, records_failure
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

log = logging.getLogger(__name__)

RESTORE_TARGET_CONNECTION = "hms_restore_target"
APPROVAL_TASK_ID = "approve_swap"
STEP_TASK_IDS = ("validate_request", "restore_into_target", "check_restored_tables", "swap_into_production",
                 "check_production_after_swap")
APPROVAL_SUBJECT = "hms_dr_restore: swap {{ 'every table' if params.all_tables else params.tables | join(', ') }} into production?"
APPROVAL_BODY = "{{ ti.xcom_pull(task_ids='check_restored_tables')['approval_body'] }}"
NOT_RECORDED = "unknown"
NOT_RECORDED_WHY = ("no response recorded: the approval task was marked success outside its form "
                    "(airflow dags test --mark-success-pattern, or Mark Success in the UI)")


def settings(policy: Policy) -> DrRestorePolicy:
    return dr_restore_policy(policy)


def dr_settings(policy: Policy) -> DrPolicy:
    return policy.dr or DrPolicy()  # parse_policy always sets it


def scratch_queue(policy: Policy) -> str:
    """The database-host worker's queue: a scratch cluster and its teardown must share a host."""
    return policy.wal.spool_queue if policy.wal else "default"


def _admin(policy: Policy) -> ConnectionInfo:
    return database_connection(settings(policy).admin_connection_id, policy.cluster.database)


def _restore_admin() -> ConnectionInfo:
    return database_connection(RESTORE_TARGET_CONNECTION)


def _tables(plan: Mapping[str, Any]) -> list[TableName]:
    return [TableName.parse(name) for name in plan["tables"]]


def _workdir(policy: Policy, plan: Mapping[str, Any]) -> Path:
    return work_dir(policy) / plan["run_key"]


# -- 1. validate ---------------------------------------------------------------------------------


@task
@records_failure
@engine_errors_decide_retry
def validate_request() -> dict[str, Any]:
    """Every param again, together; then against the store and production (the set exists and is
    complete, the tables are in it, the target is new, the swap is possible). Nothing is touched."""
    from hms_dr.dr.validate import validate_restore

    context = get_current_context()
    params = run_params(context)
    policy = load_policy()
    validated = validate_restore(
        params, run_id=str(context["run_id"]), policy=policy, store=open_policy_store(policy),
        production=database_connection(policy.cluster.connection_id, policy.cluster.database), admin=_admin(policy),
        admin_connection_id=settings(policy).admin_connection_id, restore_target=_restore_admin,
        decryption_key=lambda: decryption_key(policy),
    )
    what = "every table" if validated["whole_database"] else ", ".join(validated["tables"])
    log.info("DR restore of %s from %s into %s %s%s", what, describe_source(validated), validated["target_kind"],
             validated["staging_schema"] or validated["target_database"],
             ", then a swap into production after approval" if validated["swap_into_production"] else "")
    audit_event(context, params, "started", details={"plan": validated})
    return validated


# -- 2. restore ----------------------------------------------------------------------------------


def restore_into_target(policy: Policy) -> Any:
    """The restore task, on the database-host queue (see the module docstring)."""

    @task(task_id="restore_into_target", queue=scratch_queue(policy))
    @records_failure
    @engine_errors_decide_retry
    def run(plan: dict[str, Any]) -> dict[str, Any]:
        """Build the source (scratch database from the set, or scratch cluster at the point in
        time), move the tables into the staging schema there, stream it into production's
        database (or the whole source into the new database), then remove the source."""
        return _restore(load_policy(), plan)

    return run


def _restore(policy: Policy, plan: dict[str, Any]) -> dict[str, Any]:
    from hms_dr.dr.copy import copy_objects, create_target_database

    started = datetime.now(timezone.utc)
    admin = _admin(policy)
    tables = _tables(plan)
    steps: dict[str, float] = {}
    result: dict[str, Any] = {"started_at": started.isoformat()}
    source, remove_source = _build_source(policy, plan, steps, result)
    try:
        moment = datetime.now(timezone.utc)
        if plan["target_kind"] == TargetKind.STAGING_SCHEMA.value:
            result.update(staging.stage_tables_in_source(source, tables, plan["staging_schema"]))
            copied = copy_objects(source, admin, schema=plan["staging_schema"])
            result["restored_into"] = f"schema {plan['staging_schema']} of {admin.dbname}"
        else:
            if not plan["whole_database"]:
                result["tables_left_out"] = staging.keep_only_tables(source, tables, staging.list_tables(source))
            create_target_database(admin, plan["target_database"], like=policy.cluster.database)
            copied = copy_objects(source, admin.with_database(plan["target_database"]), schema=None)
            result["restored_into"] = f"database {plan['target_database']} on {admin.host}:{admin.port}"
        steps["copy_into_target"] = (datetime.now(timezone.utc) - moment).total_seconds()
        result["sql_bytes"] = copied["sql_bytes"]
    finally:
        remove_source()
    result["steps_s"] = {name: round(seconds, 3) for name, seconds in steps.items()}
    log.info("restored %s into %s in %.0f s", ", ".join(plan["tables"]), result["restored_into"],
             (datetime.now(timezone.utc) - started).total_seconds())
    return result


def _build_source(policy: Policy, plan: dict[str, Any], steps: dict[str, float], result: dict[str, Any]) -> tuple[ConnectionInfo, Callable[[], None]]:
    """The disposable source database and how to remove it."""
    store = open_policy_store(policy)
    moment = datetime.now(timezone.utc)
    if plan["source"] == Source.LOGICAL_BACKUP.value:
        restore_admin = _restore_admin()
        scratch = plan["scratch_database"]
        backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, plan["backup_set_id"])
        workdir = _workdir(policy, plan)
        try:
            fetched = restore.fetch_for_restore(store, backup_set, decryption_key(policy), workdir)
            restore.create_scratch_database(restore_admin, scratch)
            restore.run_pg_restore(restore_admin.with_database(scratch), fetched.path, jobs=settings(policy).restore_jobs)
        except BaseException:
            _drop_quietly(restore_admin, scratch)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # the decrypted dump never outlives the task
        steps["restore_scratch_database"] = (datetime.now(timezone.utc) - moment).total_seconds()
        result["source"] = f"scratch database {scratch} on {restore_admin.host}:{restore_admin.port} from set {backup_set.backup_set_id}"
        return restore_admin.with_database(scratch), lambda: _drop_quietly(restore_admin, scratch)

    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import parse_recovery_target

    cluster = scratch_cluster_for(policy, plan["run_key"])
    staging.remove_scratch_cluster(cluster)  # leftovers of an earlier try of this run
    first, last = dr_settings(policy).pitr_port_range
    port = staging.free_port_in(first, last)
    target = plan["recovery_target"]
    try:
        recovered = recover(
            store, policy.cluster.name,
            parse_recovery_target(str(target["kind"]), target.get("value"), inclusive=bool(target.get("inclusive", True))),
            data_dir=cluster.data_dir, port=port, decryption_key=decryption_key(policy), staging_dir=work_dir(policy),
            backup_set_id=(plan.get("recovery_plan") or {}).get("backup_set_id"),
            socket_dir=cluster.socket_dir, log_file=cluster.log_file,
        )
    except BaseException:
        staging.remove_scratch_cluster(cluster, port=port)
        raise
    steps["recover_scratch_cluster"] = (datetime.now(timezone.utc) - moment).total_seconds()
    result["source"] = f"scratch cluster on 127.0.0.1:{port} recovered to {target['kind']} {target.get('value')}"
    result["recovery"] = {k: recovered.get(k) for k in ("backup_set_id", "timeline", "recovery_end_lsn", "recovery_end_reason",
                                                      "recovery_end_time", "seconds")}
    admin = _admin(policy)
    # The recovered cluster is production as it was: its roles and passwords are production's.
    source = ConnectionInfo("127.0.0.1", port, admin.user, policy.cluster.database, admin.password)

    def remove() -> None:
        staging.remove_scratch_cluster(cluster, port=port)

    return source, remove


def _drop_quietly(admin: ConnectionInfo, name: str) -> None:
    try:
        staging.drop_scratch_database(admin, name)
    except Exception as exc:  # the teardown tries again; the restore's own outcome stands
        log.warning("scratch database %s not dropped now (the teardown retries): %s", name, exc)


def remove_scratch(policy: Policy) -> Any:
    """The teardown of the restore, on the same queue."""

    @task(task_id="remove_scratch", queue=scratch_queue(policy))
    @engine_errors_decide_retry
    def run(plan: dict[str, Any] | None) -> str:
        """Teardown: the scratch database or cluster goes, whatever happened (normally the restore
        removed it already)."""
        if not plan:
            return "nothing planned"
        policy_now = load_policy()
        if plan.get("scratch_database"):
            existed = staging.drop_scratch_database(_restore_admin(), plan["scratch_database"])
            return f"dropped {plan['scratch_database']}" if existed else f"{plan['scratch_database']} already gone"
        if plan.get("scratch_cluster"):
            existed = staging.remove_scratch_cluster(scratch_cluster_for(policy_now, plan["run_key"]))
            return "removed the scratch cluster" if existed else "scratch cluster already gone"
        return "nothing to remove"

    return run


# -- 3. check ------------------------------------------------------------------------------------


@task
@records_failure
@engine_errors_decide_retry
def check_restored_tables(plan: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    """Data quality of the restored tables (the set's baselines, or production's columns for a
    point in time), their row counts, and, when a swap follows, its plan and the approval body."""
    from hms_dr.dr import verify

    context = get_current_context()
    policy = load_policy()
    admin = _admin(policy)
    tables = _tables(plan)
    staging_schema = plan.get("staging_schema") if plan["target_kind"] == TargetKind.STAGING_SCHEMA.value else None
    target = admin if staging_schema else admin.with_database(plan["target_database"])
    where = [TableName(staging_schema or t.schema, t.name) for t in tables]
    counted = verify.count_rows(target, where)
    rows_restored = {t.qualified: counted[w.qualified] for t, w in zip(tables, where)}
    checks = _quality_checks(policy, plan, target, tables, staging_schema) if plan["run_quality_checks"] else None
    result: dict[str, Any] = {"rows_restored": rows_restored, "checks": checks, "approval_body": None}
    if plan["swap_into_production"]:
        from hms_dr.dr.report import approval_body
        from hms_dr.dr.swap import preview_swap

        preview = preview_swap(admin, tables, staging_schema=plan["staging_schema"], quarantine_schema=plan["quarantine_schema"])
        rows_now = verify.count_rows(admin, tables)
        summary = preview.summary()
        result.update(swap_plan=summary, rows_now=rows_now)
        result["approval_body"] = approval_body(
            plan, summary, rows_now=rows_now, rows_restored=rows_restored, checks=checks,
            triggered_by=triggered_by(context["dag_run"]), run_id=str(context["run_id"]),
            measured_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        for line in result["approval_body"].splitlines()[:12]:
            log.info("approval: %s", line)
        if preview.refusals:
            raise SwapRefused(f"the swap cannot be made: {'; '.join(preview.refusals)}")
    if checks is not None and not checks["passed"]:
        raise QualityCheckFailed(f"the restored tables fail {len(checks['failed'])} check(s): {'; '.join(checks['failed'][:5])}")
    return result


def _quality_checks(policy: Policy, plan: Mapping[str, Any], target: ConnectionInfo, tables: list[TableName],
                    staging_schema: str | None) -> dict[str, Any]:
    from hms_dr.dr import verify

    if plan["source"] == Source.POINT_IN_TIME.value:
        return verify.compare_with_production(_admin(policy), target, tables, staging_schema=staging_schema)
    from hms_dr.quality import RUNBOOK_SMOKE_QUERIES, check_restored_database

    store = open_policy_store(policy)
    backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, plan["backup_set_id"])
    baselines = verify.baselines_for_restored(backup_set.manifest.baselines, tables, staging_schema=staging_schema,
                                              whole_database=bool(plan["whole_database"]))
    smoke = RUNBOOK_SMOKE_QUERIES if plan["whole_database"] and staging_schema is None else ()
    report_dir = _workdir(policy, plan) / "report"
    try:
        outcome = check_restored_database(target.libpq_dsn(), baselines, report_dir=report_dir,
                                          backup_set_id=backup_set.backup_set_id, smoke_queries=smoke)
    finally:
        shutil.rmtree(report_dir.parent, ignore_errors=True)
    rows = [{k: c.get(k) for k in ("check", "target", "expected", "observed", "passed")} for c in outcome["checks"]]
    return {"passed": outcome["passed"], "checks": rows, "failed": outcome["failed"],
            "note": f"against the baselines of backup set {backup_set.backup_set_id}"}


@task.short_circuit
def swap_requested(plan: dict[str, Any]) -> bool:
    """Go on to the approval only when swap_into_production was asked for."""
    if not plan["swap_into_production"]:
        log.info("swap_into_production is false: the restored tables stay in %s", plan.get("staging_schema") or plan.get("target_database"))
    return bool(plan["swap_into_production"])


RESPONSE_KEY = "response"


class RecordedApproval(ApprovalOperator):  # type: ignore[misc]
    """An ApprovalOperator that keeps the answer (who, when, which) in XCom whatever it was: a
    rejection skips the downstream tasks, and a task that skips pushes no return value."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            at = event.get("responded_at")
            context["ti"].xcom_push(key=RESPONSE_KEY, value={
                "chosen_options": list(event.get("chosen_options") or []),
                "responded_by_user": dict(event.get("responded_by_user") or {}),
                "responded_at": at.isoformat() if isinstance(at, datetime) else at,
            })
        return super().execute_complete(context, event)


def approve_swap(policy: Policy) -> RecordedApproval:
    """The human approval: the body shows exactly what the swap will change."""
    return RecordedApproval(
        task_id=APPROVAL_TASK_ID,
        subject=APPROVAL_SUBJECT,
        body=APPROVAL_BODY,
        response_timeout=timedelta(hours=settings(policy).approval_timeout_hours),
        ignore_downstream_trigger_rules=True,  # a rejection skips the swap and its checks
        fail_on_reject=False,  # rejecting is an answer, not a failure: the run ends with production untouched
        retries=0,  # a timed-out approval must not ask again by itself
    )


# -- 4. swap -------------------------------------------------------------------------------------


def approval_given(ti: Any) -> Approval | None:
    """Who answered the approval, when, and how (None when nobody did)."""
    answer = ti.xcom_pull(task_ids=APPROVAL_TASK_ID, key=RESPONSE_KEY) or ti.xcom_pull(task_ids=APPROVAL_TASK_ID)
    if not answer:
        return None
    chosen = list(answer.get("chosen_options") or [])
    user = answer.get("responded_by_user") or {}
    at = answer.get("responded_at")
    moment = at if isinstance(at, datetime) else datetime.fromisoformat(str(at)) if at else datetime.now(timezone.utc)
    decision = "approved" if chosen == ["Approve"] else "rejected"
    return Approval(by=str(user.get("name") or user.get("id") or "unknown"), at=moment, decision=decision)


@task
@records_failure
@engine_errors_decide_retry
def swap_into_production(plan: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
    """The swap, in one transaction, refused unless production still matches the approved plan."""
    from hms_dr.dr.swap import execute_swap

    context = get_current_context()
    policy = load_policy()
    approval = approval_given(context["ti"]) or Approval(NOT_RECORDED, datetime.now(timezone.utc), "approved", NOT_RECORDED_WHY)
    if approval.decision != "approved":
        raise SwapRefused(f"the swap was not approved ({approval.decision} by {approval.by})")
    audit_event(context, dict(context["params"]), "approved", f"swap approved by {approval.by}", approvals=[approval],
                details={"swap_digest": checked["swap_plan"]["digest"]})
    return execute_swap(
        _admin(policy), _tables(plan), staging_schema=plan["staging_schema"], quarantine_schema=plan["quarantine_schema"],
        approved_digest=checked["swap_plan"]["digest"], lock_timeout_s=settings(policy).swap_lock_timeout_s,
    )


@task
@records_failure
@engine_errors_decide_retry
def check_production_after_swap(plan: dict[str, Any], swapped: dict[str, Any]) -> dict[str, Any]:
    """After the commit: each name reaches the restored table, the old one is quarantined, keys,
    views, owner, grants and sequences follow; the tables are analyzed."""
    from hms_dr.dr.verify import check_after_swap

    outcome = check_after_swap(_admin(load_policy()), swapped)
    for check in outcome["checks"]:
        log.info("%s %s: %s", "ok  " if check["passed"] else "FAIL", check["check"], check["target"])
    if not outcome["passed"]:
        raise QualityCheckFailed(f"the swap committed but production fails {len(outcome['failed'])} check(s): "
                                 f"{'; '.join(outcome['failed'][:5])}")
    return outcome


# -- 5. audit ------------------------------------------------------------------------------------


@task
def record_outcome() -> str:
    """Teardown: the audit record of how the run ended — swapped, restored without a swap,
    rejected, or failed with the first failing step's reason — with the approvals given."""
    context = get_current_context()
    ti = context["ti"]
    params = dict(context["params"])
    plan = ti.xcom_pull(task_ids="validate_request")
    restored = ti.xcom_pull(task_ids="restore_into_target")
    checked = ti.xcom_pull(task_ids="check_restored_tables")
    swapped = ti.xcom_pull(task_ids="swap_into_production")
    after = ti.xcom_pull(task_ids="check_production_after_swap")
    approval = approval_given(ti)
    if approval is None and swapped:
        approval = Approval(NOT_RECORDED, datetime.now(timezone.utc), "approved", NOT_RECORDED_WHY)
    approvals = [approval] if approval else []
    failures = [(task_id, ti.xcom_pull(task_ids=task_id, key=FAILURE_KEY)) for task_id in STEP_TASK_IDS]
    failed = [(task_id, line) for task_id, line in failures if line]
    details: dict[str, Any] = {
        "plan": plan, "restored": restored,
        "checks": (checked or {}).get("checks"), "rows_restored": (checked or {}).get("rows_restored"),
        "rows_now": (checked or {}).get("rows_now"), "swap": swapped, "after_swap": after,
    }
    if failed:
        task_id, line = failed[0]
        event, outcome = "failed", f"{task_id}: {line}"
    elif swapped and after:
        event = "succeeded"
        outcome = (f"swapped {', '.join(t['table'] for t in swapped['tables'])} into production; the replaced tables are in "
                   f"{swapped['quarantine_schema']}")
    elif approval and approval.decision == "rejected":
        event = "rejected"
        outcome = f"swap rejected by {approval.by}: production unchanged; the restored tables stay in {plan and plan.get('staging_schema')}"
    elif checked is not None and plan and not plan.get("swap_into_production"):
        event = "succeeded"
        outcome = f"restored into {(restored or {}).get('restored_into')} (no swap asked for)"
    else:
        event, outcome = "failed", "a step did not finish (killed, timed out or skipped): see the run's task logs"
    audit_event(context, params, event, outcome, details=details, approvals=approvals)
    return outcome
