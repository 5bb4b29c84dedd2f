"""Task callables of hms_dr_restore: validate the request, restore the tables into production's
staging schema (or a new database), check them, ask for approval and swap (one task: see
SwapAfterApproval), check production, and write the audit trail whatever happened.

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
from typing import Any, Callable, Mapping

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, get_current_context, task
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowSkipException, TaskAwaitingInput

from hms_dr import restore
from hms_dr.audit import Approval
from hms_dr.catalog import find_set
from hms_dr.dr import staging
from hms_dr.dr.approval import (
    PLAN_DIGEST,
    SHORT,
    ApprovalAnswer,
    ApprovalForm,
    eligible_approvers,
    form_problems,
    judge_answer,
    role_members,
)
from hms_dr.dr.request import Source, TableName, TargetKind
from hms_dr.dr.report import describe_source
from hms_dr.dr.validate import scratch_cluster_for, work_dir
from hms_dr.errors import ApprovalRefused, QualityCheckFailed, SwapRefused
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import DrPolicy, DrRestorePolicy, Policy, load_policy
from hms_dr.scratch import cluster as scratch_clusters
from hms_dr.scratch import database as scratch_databases
from hms_dr.tasks.audit import FAILURE_KEY, audit_event, triggered_by, records_failure
from hms_dr.tasks.connections import database_connection, restore_target_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

log = logging.getLogger(__name__)

SWAP_TASK_ID = "swap_into_production"  # asks for the approval, then swaps (SwapAfterApproval)
DECISION_KEY = "decision"  # XCom of the swap task: what it made of the answer (for the final audit record)
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
STEP_TASK_IDS = ("validate_request", "restore_into_target", "check_restored_tables", "swap_into_production",
                 "check_production_after_swap")
APPROVAL_SUBJECT = "hms_dr_restore: swap {{ 'every table' if params.all_tables else params.tables | join(', ') }} into production?"


def settings(policy: Policy) -> DrRestorePolicy:
    return policy.dr_restore


def dr_settings(policy: Policy) -> DrPolicy:
    return policy.dr


def scratch_queue(policy: Policy) -> str:
    """The database-host worker's queue: a scratch cluster and its teardown must share a host."""
    return policy.wal.spool_queue


def _admin(policy: Policy) -> ConnectionInfo:
    return database_connection(settings(policy).admin_connection_id, policy.cluster.database)


def _restore_admin() -> ConnectionInfo:
    return restore_target_connection(load_policy())


def _tables(plan: Mapping[str, Any]) -> list[TableName]:
    return [TableName.parse(name) for name in plan["tables"]]


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
    if validated["swap_into_production"]:
        # Before hours of restore: a swap nobody may approve (the policy names no one besides the
        # user who triggered the run) is refused now.
        log.info("the swap may be approved by %s", ", ".join(approvers_for(policy, context["dag_run"])))
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
        workdir = work_dir(policy, plan["run_key"])
        try:
            fetched = restore.fetch_for_restore(store, backup_set, decryption_key(policy), workdir)
            scratch_databases.create_scratch_database(restore_admin, scratch)
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
    scratch_clusters.remove_scratch_cluster(cluster)  # leftovers of an earlier try of this run
    first, last = dr_settings(policy).pitr_port_range
    port = scratch_clusters.free_port_in(first, last)
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
        scratch_clusters.remove_scratch_cluster(cluster)
        raise
    steps["recover_scratch_cluster"] = (datetime.now(timezone.utc) - moment).total_seconds()
    result["source"] = f"scratch cluster on 127.0.0.1:{port} recovered to {target['kind']} {target.get('value')}"
    result["recovery"] = {k: recovered.get(k) for k in ("backup_set_id", "timeline", "recovery_end_lsn", "recovery_end_reason",
                                                      "recovery_end_time", "seconds")}
    admin = _admin(policy)
    # The recovered cluster is production as it was: its roles and passwords are production's.
    source = ConnectionInfo("127.0.0.1", port, admin.user, policy.cluster.database, admin.password)

    def remove() -> None:
        scratch_clusters.remove_scratch_cluster(cluster)

    return source, remove


def _drop_quietly(admin: ConnectionInfo, name: str) -> None:
    try:
        scratch_databases.drop_scratch_database(admin, name)
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
            existed = scratch_databases.drop_scratch_database(_restore_admin(), plan["scratch_database"])
            return f"dropped {plan['scratch_database']}" if existed else f"{plan['scratch_database']} already gone"
        if plan.get("scratch_cluster"):
            removed = scratch_clusters.remove_scratch_cluster(scratch_cluster_for(policy_now, plan["run_key"]))
            return f"removed the scratch cluster ({', '.join(removed)})" if removed else "scratch cluster already gone"
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
    from hms_dr.quality import check_restored_database

    store = open_policy_store(policy)
    backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, plan["backup_set_id"])
    baselines = verify.baselines_for_restored(backup_set.manifest.baselines, tables, staging_schema=staging_schema,
                                              whole_database=bool(plan["whole_database"]))
    # The application's queries name its relations unqualified: they only make sense on a whole database.
    smoke = policy.restore_test.smoke_queries if plan["whole_database"] and staging_schema is None else ()
    report_dir = work_dir(policy, plan["run_key"]) / "report"
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


# -- 4. approval and swap -----------------------------------------------------------------------


class SwapAfterApproval(ApprovalOperator):  # type: ignore[misc]
    """The swap and its approval in ONE task instance: the form is asked for in ``execute`` and
    the swap runs in ``execute_complete``, only on the answer Airflow resumed this task with.

    Why one task: in Airflow 3.3 a task cannot read another task's recorded answer (the execution
    API serves a form's answer to its own task instance only, and a worker's supervisor does not
    even pass the request on), and whatever a separate approval task handed on — an XCom, a task
    state — anyone with edit rights can write through the REST API. The resume event is written by
    the API server when a person answers the form (the answer, who, when), and nothing else writes
    it. So Mark Success of this task (or a PATCH of its state) swaps nothing: the code that swaps
    never runs, and the check after the swap refuses and audits the attempt.
    """

    def execute(self, context: Any) -> Any:
        asked = _ask_for_approval(self, context)
        log.info("waiting for an approval of plan %s by %s", asked["plan_digest"][:16], ", ".join(asked["approvers"]))
        # Raised here, outside _ask_for_approval: its wrappers must not take the park for a failure.
        raise TaskAwaitingInput(method_name="execute_complete", kwargs={"asked": asked}, timeout=self.response_timeout)

    def execute_complete(self, context: Any, event: dict[str, Any], asked: dict[str, Any] | None = None) -> Any:
        swapped = _swap_if_approved(context, event, asked)
        if swapped is None:
            # A rejection: skip the check after the swap; the run ends with production untouched.
            raise AirflowSkipException("the swap was rejected: production unchanged")
        return swapped


def swap_into_production(policy: Policy) -> SwapAfterApproval:
    """The approval (the body shows exactly what the swap will change) and the swap."""
    return SwapAfterApproval(
        task_id=SWAP_TASK_ID,
        subject=APPROVAL_SUBJECT,
        response_timeout=timedelta(hours=settings(policy).approval_timeout_hours),
        retries=0,  # an approval counts for one attempt: a timed-out or failed swap never asks again by itself
    )


def _role_members(restore_settings: DrRestorePolicy) -> dict[str, tuple[str, ...]]:
    """The simple auth manager's users by role, when the policy names approver roles. Roles are
    resolved from this Airflow's own user list; another auth manager's roles cannot be read here."""
    if not restore_settings.approver_roles:
        return {}
    from airflow.sdk.configuration import conf

    manager = str(conf.get("core", "auth_manager", fallback=SIMPLE_AUTH_MANAGER) or SIMPLE_AUTH_MANAGER)
    if manager.rsplit(".", 1)[-1] != SIMPLE_AUTH_MANAGER.rsplit(".", 1)[-1]:
        raise ApprovalRefused(f"dr.restore.approver_roles needs Airflow's simple auth manager, this Airflow uses {manager}",
                              hint="name the approvers' user ids in dr.restore.approvers instead")
    users = str(conf.get("core", "simple_auth_manager_users", fallback="admin:admin") or "")
    return role_members([entry for entry in users.split(",") if entry.strip()])


def approvers_for(policy: Policy, dag_run: Any) -> tuple[str, ...]:
    """Who may approve this run's swap (refuses when nobody may)."""
    restore_settings = settings(policy)
    return eligible_approvers(restore_settings, triggered_by=getattr(dag_run, "triggering_user_name", None),
                              members=_role_members(restore_settings))


@records_failure
@engine_errors_decide_retry
def _ask_for_approval(operator: SwapAfterApproval, context: Any) -> dict[str, Any]:
    """Write this try's approval form; refuse when Airflow holds an older form for this task
    instance (a cleared task keeps its first one) that shows another plan or other approvers."""
    ti = context["ti"]
    checked = ti.xcom_pull(task_ids="check_restored_tables")
    digest = str(checked["swap_plan"]["digest"])
    policy = load_policy()
    approvers = approvers_for(policy, context["dag_run"])
    four_eyes = "" if settings(policy).allow_self_approval else f" (not {triggered_by(context['dag_run'])}, who triggered this run)"
    operator.body = (
        f"{checked['approval_body']}\n\n**Who may approve:** {', '.join(approvers)}{four_eyes}. The answer carries the plan "
        f"digest `{digest[:SHORT]}` (field `{PLAN_DIGEST}`): the swap runs only on **Approve** in this form, for this plan. "
        "Setting this task to success swaps nothing."
    )
    operator.params = ParamsDict({PLAN_DIGEST: Param(
        digest, type="string", title="Plan digest", description="The plan this approval is for: leave it as it is.",
    )})
    operator.assigned_users = [{"id": user, "name": user} for user in approvers]
    wanted = ApprovalForm(body=operator.body, plan_digest=digest, assigned=approvers)
    stored = _write_form(operator, ti.id, approvers)
    problems = form_problems(stored, wanted)
    if problems:
        raise ApprovalRefused(f"the approval form Airflow keeps for this task is an earlier try's: {'; '.join(problems)}",
                              hint="trigger a new hms_dr_restore run: its form will show the swap as it is now")
    return {"plan_digest": digest, "approvers": list(approvers)}


def _write_form(operator: SwapAfterApproval, ti_id: Any, approvers: tuple[str, ...]) -> ApprovalForm:
    """Airflow's upsert_hitl_detail, keeping what the API answers: the form it holds now, which is
    an earlier try's when this task instance had one already."""
    from airflow.sdk.api.datamodels._generated import HITLUser
    from airflow.sdk.execution_time.comms import CreateHITLDetailPayload
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    stored = SUPERVISOR_COMMS.send(msg=CreateHITLDetailPayload(
        # No defaults: a form nobody answers in time fails; Airflow never answers it by itself.
        ti_id=ti_id, options=operator.options, subject=operator.subject, body=operator.body, defaults=None,
        multiple=False, params=operator.serialized_params,
        assigned_users=[HITLUser(id=user, name=user) for user in approvers],
    ))
    field = (getattr(stored, "params", None) or {}).get(PLAN_DIGEST)
    return ApprovalForm(
        body=str(getattr(stored, "body", None) or ""),
        plan_digest=field.get("value") if isinstance(field, dict) else None,
        assigned=tuple(str(user.id) for user in (getattr(stored, "assigned_users", None) or [])),
    )


@records_failure
@engine_errors_decide_retry
def _swap_if_approved(context: Any, event: Mapping[str, Any], asked: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Judge the answer Airflow resumed this task with; swap on an approval (the swap's result),
    record a rejection (None), refuse anything else — each with its audit record."""
    from hms_dr.dr.swap import execute_swap

    ti = context["ti"]
    params = dict(context["params"])
    policy = load_policy()
    plan = ti.xcom_pull(task_ids="validate_request")
    if "error" in event or not asked:
        # The scheduler's timeout sweep (or a resume without this task's own request) is no answer.
        raise ApprovalRefused(f"no approval within {settings(policy).approval_timeout_hours} h: nothing swapped, production unchanged"
                              if event.get("error_type") == "timeout" else f"no approval recorded: {event.get('error') or 'no request'}")
    digest = str(asked["plan_digest"])
    dag_run = context["dag_run"]
    try:
        eligible_now = approvers_for(policy, dag_run)
    except ApprovalRefused:
        eligible_now = ()  # the policy changed while the form waited: nobody may approve now
    # Both lists: the form was assigned to these when it was asked (all an API that checks them
    # lets answer), and the policy as it is now may have taken someone off since.
    eligible = tuple(user for user in eligible_now if user in asked.get("approvers", ()))
    verdict = judge_answer(_answer(event), plan_digest=digest, settings=settings(policy),
                           triggered_by=getattr(dag_run, "triggering_user_name", None), eligible=eligible,
                           now=datetime.now(timezone.utc))
    ti.xcom_push(key=DECISION_KEY, value={"decision": verdict.decision, "by": verdict.by, "at": verdict.at.isoformat(),
                                          "why": verdict.why})
    if verdict.decision == "rejected":
        log.info("the swap was rejected by %s: production unchanged", verdict.by)
        return None
    if not verdict.approved:
        audit_event(context, params, "refused", f"swap refused, production unchanged: {verdict.why}",
                    approvals=[verdict.as_audit()], details={"swap_digest": digest, "approvers": list(eligible)})
        raise ApprovalRefused(f"swap refused, production unchanged: {verdict.why}")
    audit_event(context, params, "approved", f"swap approved by {verdict.by}", approvals=[verdict.as_audit()],
                details={"swap_digest": digest})
    return execute_swap(
        _admin(policy), _tables(plan), staging_schema=plan["staging_schema"], quarantine_schema=plan["quarantine_schema"],
        approved_digest=digest, lock_timeout_s=settings(policy).swap_lock_timeout_s,
    )


def _answer(event: Mapping[str, Any]) -> ApprovalAnswer:
    """The resume event as plain data (its keys: HITLDetail.as_resume_event_payload)."""
    user = event.get("responded_by_user") or {}
    at = event.get("responded_at")
    digest = (event.get("params_input") or {}).get(PLAN_DIGEST)
    return ApprovalAnswer(
        chosen_options=tuple(str(option) for option in event.get("chosen_options") or ()),
        responder_id=str(user["id"]) if user.get("id") else None,
        responder_name=str(user["name"]) if user.get("name") else None,
        responded_at=at if isinstance(at, datetime) else datetime.fromisoformat(str(at)) if at else None,
        plan_digest=str(digest) if digest else None,
    )


def decision_given(ti: Any) -> Approval | None:
    """The decision the swap task made on the answer (for the final audit record), or None."""
    decision = ti.xcom_pull(task_ids=SWAP_TASK_ID, key=DECISION_KEY)
    if not decision:
        return None
    return Approval(by=str(decision["by"]), at=datetime.fromisoformat(str(decision["at"])), decision=str(decision["decision"]),
                    comment=str(decision.get("why") or ""))


@task
@records_failure
@engine_errors_decide_retry
def check_production_after_swap() -> dict[str, Any]:
    """After the commit: each name reaches the restored table, the old one is quarantined, keys,
    views, owner, grants and sequences follow; the tables are analyzed. A swap task that ended
    without a result never swapped (it was set to success by hand): that is refused and audited."""
    from hms_dr.dr.verify import check_after_swap

    context = get_current_context()
    swapped = context["ti"].xcom_pull(task_ids=SWAP_TASK_ID)
    if not swapped:
        line = (f"{SWAP_TASK_ID} was set to success without an approval answered in its form (Mark Success, or a "
                "PATCH of its state): nothing was swapped, production unchanged")
        audit_event(context, dict(context["params"]), "refused", line)
        raise ApprovalRefused(line, hint="trigger a new run and approve the swap in its form (Required Actions)")
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
    swapped = ti.xcom_pull(task_ids=SWAP_TASK_ID)
    after = ti.xcom_pull(task_ids="check_production_after_swap")
    approval = decision_given(ti)
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
