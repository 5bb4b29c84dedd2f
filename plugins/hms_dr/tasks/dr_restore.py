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
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, get_current_context, task
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowSkipException, TaskAwaitingInput

from hms_dr.dr.after_swap import SWAP_TASK_ID
from hms_dr.policy import Policy, load_policy
from hms_dr.tasks.audit import FAILURE_KEY, audit_event, records_failure, triggered_by
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store, restore_target_connection
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

if TYPE_CHECKING:
    from hms_dr.dr.approval import ApprovalForm, ApprovalVerdict
    from hms_dr.dr.approved_swap import SwapDecision
    from hms_dr.dr.validated import ValidatedRestore
    from hms_dr.pgtools import ConnectionInfo

# The engine is imported inside the task callables: parsing the DAG file loads none of it.

log = logging.getLogger(__name__)

DECISION_KEY = (
    "decision"  # XCom of the swap task: what it made of the answer (an ApprovalVerdict, for the final audit record)
)
STEP_TASK_IDS = (
    "validate_request",
    "restore_into_target",
    "check_restored_tables",
    SWAP_TASK_ID,
    "check_production_after_swap",
)
APPROVAL_SUBJECT = (
    "hms_dr_restore: swap {{ 'every table' if params.all_tables else params.tables | join(', ') }} into production?"
)


def _admin(policy: Policy) -> ConnectionInfo:
    """Production's database as the admin role (``dr.restore.admin_connection_id``)."""
    return database_connection(policy.dr_restore.admin_connection_id, policy.cluster.database)


def _pulled_plan(ti: Any) -> ValidatedRestore | None:
    from hms_dr.dr.validated import ValidatedRestore

    pulled = ti.xcom_pull(task_ids="validate_request")
    return ValidatedRestore.from_xcom(pulled) if pulled else None


def _triggering_user(dag_run: Any) -> str | None:
    return getattr(dag_run, "triggering_user_name", None)


def _auth_manager() -> tuple[str, str]:
    """This Airflow's auth manager and the simple auth manager's users (``name:role`` entries)."""
    from airflow.sdk.configuration import conf

    from hms_dr.dr.approval import SIMPLE_AUTH_MANAGER

    manager = str(conf.get("core", "auth_manager", fallback=SIMPLE_AUTH_MANAGER) or SIMPLE_AUTH_MANAGER)
    return manager, str(conf.get("core", "simple_auth_manager_users", fallback="admin:admin") or "")


# -- 1. validate ---------------------------------------------------------------------------------


@task
@records_failure
@engine_errors_decide_retry
def validate_request() -> dict[str, Any]:
    """Every param again, together; then against the store and production (the set exists and is
    complete, the tables are in it, the target is new, the swap is possible). Nothing is touched."""
    from hms_dr.dr.approval import approvers_for
    from hms_dr.dr.report import describe_source
    from hms_dr.dr.validate import validate_restore

    context = get_current_context()
    params = run_params(context)
    policy = load_policy()
    plan = validate_restore(
        params,
        run_id=str(context["run_id"]),
        cluster=policy.cluster,
        dr=policy.dr,
        staging=policy.staging,
        backup_schemas=policy.logical_backup.schemas,
        store=open_policy_store(policy),
        production=database_connection(policy.cluster.connection_id, policy.cluster.database),
        admin=_admin(policy),
        admin_connection_id=policy.dr_restore.admin_connection_id,
        restore_target=lambda: restore_target_connection(policy),
        decryption_key=lambda: decryption_key(policy),
    )
    if plan.swap_into_production:
        # Before hours of restore: a swap nobody may approve (the policy names no one besides the
        # user who triggered the run) is refused now.
        manager, users = _auth_manager()
        approvers = approvers_for(
            policy.dr_restore,
            triggered_by=_triggering_user(context["dag_run"]),
            auth_manager=manager,
            simple_auth_manager_users=users,
        )
        log.info("the swap may be approved by %s", ", ".join(approvers))
    validated = plan.to_xcom()
    what = "every table" if plan.whole_database else ", ".join(plan.tables)
    log.info(
        "DR restore of %s from %s into %s %s%s",
        what,
        describe_source(validated),
        plan.target_kind.value,
        plan.kept_in,
        ", then a swap into production after approval" if plan.swap_into_production else "",
    )
    audit_event(context, params, "started", details={"plan": validated})
    return validated


# -- 2. restore ----------------------------------------------------------------------------------


def restore_into_target(policy: Policy) -> Any:
    """The restore task, on the database-host queue (see the module docstring)."""

    @task(task_id="restore_into_target", queue=policy.wal.spool_queue)
    @records_failure
    @engine_errors_decide_retry
    def run(plan: dict[str, Any]) -> dict[str, Any]:
        """Build the source (scratch database from the set, or scratch cluster at the point in
        time), move the tables into the staging schema there, stream it into production's
        database (or the whole source into the new database), then remove the source."""
        from hms_dr.dr.restore_into_target import restore_into_target as restore_tables
        from hms_dr.dr.validated import ValidatedRestore

        policy_now = load_policy()
        return restore_tables(
            ValidatedRestore.from_xcom(plan),
            store=open_policy_store(policy_now),
            cluster=policy_now.cluster,
            dr=policy_now.dr,
            restore_settings=policy_now.dr_restore,
            staging=policy_now.staging,
            admin=_admin(policy_now),
            restore_target=lambda: restore_target_connection(policy_now),
            decryption_key=decryption_key(policy_now),
        ).to_xcom()

    return run


def remove_scratch(policy: Policy) -> Any:
    """The teardown of the restore, on the same queue."""

    @task(task_id="remove_scratch", queue=policy.wal.spool_queue)
    @engine_errors_decide_retry
    def run(plan: dict[str, Any] | None) -> str:
        """Teardown: the scratch database or cluster goes, whatever happened (normally the restore
        removed it already)."""
        from hms_dr.dr.source import remove_source
        from hms_dr.dr.validated import ValidatedRestore

        policy_now = load_policy()
        return remove_source(
            ValidatedRestore.from_xcom(plan) if plan else None,
            dr=policy_now.dr,
            staging=policy_now.staging,
            restore_target=lambda: restore_target_connection(policy_now),
        )

    return run


# -- 3. check ------------------------------------------------------------------------------------


@task
@records_failure
@engine_errors_decide_retry
def check_restored_tables(plan: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    """Data quality of the restored tables (the set's baselines, or production's columns for a
    point in time), their row counts, and, when a swap follows, its plan and the approval body."""
    from hms_dr.dr.check_restored import check_restored_tables as check_tables
    from hms_dr.dr.validated import ValidatedRestore

    context = get_current_context()
    policy = load_policy()
    return check_tables(
        ValidatedRestore.from_xcom(plan),
        admin=_admin(policy),
        store=open_policy_store(policy),
        cluster_name=policy.cluster.name,
        staging=policy.staging,
        smoke_queries=policy.restore_test.smoke_queries,
        triggered_by=triggered_by(context["dag_run"]),
        run_id=str(context["run_id"]),
    ).to_xcom()


@task.short_circuit
def swap_requested(plan: dict[str, Any]) -> bool:
    """Go on to the approval only when swap_into_production was asked for."""
    from hms_dr.dr.validated import ValidatedRestore

    validated = ValidatedRestore.from_xcom(plan)
    if not validated.swap_into_production:
        log.info("swap_into_production is false: the restored tables stay in %s", validated.kept_in)
    return validated.swap_into_production


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
        response_timeout=timedelta(hours=policy.dr_restore.approval_timeout_hours),
        retries=0,  # an approval counts for one attempt: a timed-out or failed swap never asks again by itself
    )


@records_failure
@engine_errors_decide_retry
def _ask_for_approval(operator: SwapAfterApproval, context: Any) -> dict[str, Any]:
    """Write this try's approval form (see hms_dr.dr.approval_request)."""
    from hms_dr.dr.approval import PLAN_DIGEST
    from hms_dr.dr.approval_request import ask_for_approval
    from hms_dr.dr.check_restored import RestoredTablesChecked

    ti = context["ti"]
    manager, users = _auth_manager()

    def write_form(form: ApprovalForm) -> ApprovalForm:
        operator.body = form.body
        operator.params = ParamsDict(
            {
                PLAN_DIGEST: Param(
                    form.plan_digest,
                    type="string",
                    title="Plan digest",
                    description="The plan this approval is for: leave it as it is.",
                )
            }
        )
        operator.assigned_users = [{"id": user, "name": user} for user in form.assigned]
        return _write_form(operator, ti.id, form.assigned)

    return ask_for_approval(
        RestoredTablesChecked.from_xcom(ti.xcom_pull(task_ids="check_restored_tables")),
        settings=load_policy().dr_restore,
        triggering_user=_triggering_user(context["dag_run"]),
        triggered_by=triggered_by(context["dag_run"]),
        auth_manager=manager,
        simple_auth_manager_users=users,
        write_form=write_form,
    ).to_xcom()


def _write_form(operator: SwapAfterApproval, ti_id: Any, approvers: tuple[str, ...]) -> ApprovalForm:
    """Airflow's upsert_hitl_detail, keeping what the API answers: the form it holds now, which is
    an earlier try's when this task instance had one already."""
    from airflow.sdk.api.datamodels._generated import HITLUser
    from airflow.sdk.execution_time.comms import CreateHITLDetailPayload
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    from hms_dr.dr.approval import PLAN_DIGEST, ApprovalForm

    stored = SUPERVISOR_COMMS.send(
        msg=CreateHITLDetailPayload(
            # No defaults: a form nobody answers in time fails; Airflow never answers it by itself.
            ti_id=ti_id,
            options=operator.options,
            subject=operator.subject,
            body=operator.body,
            defaults=None,
            multiple=False,
            params=operator.serialized_params,
            assigned_users=[HITLUser(id=user, name=user) for user in approvers],
        )
    )
    field = (getattr(stored, "params", None) or {}).get(PLAN_DIGEST)
    return ApprovalForm(
        body=str(getattr(stored, "body", None) or ""),
        plan_digest=field.get("value") if isinstance(field, dict) else None,
        assigned=tuple(str(user.id) for user in (getattr(stored, "assigned_users", None) or [])),
    )


@records_failure
@engine_errors_decide_retry
def _swap_if_approved(context: Any, event: dict[str, Any], asked: dict[str, Any] | None) -> dict[str, Any] | None:
    """The swap's result on an approval, None on a rejection (see hms_dr.dr.approved_swap); each
    verdict is kept for the final audit record and audited here."""
    from hms_dr.dr.approval_request import ApprovalRequest
    from hms_dr.dr.approved_swap import swap_after_answer

    ti = context["ti"]
    params = dict(context["params"])
    policy = load_policy()
    plan = _pulled_plan(ti)
    assert plan is not None, "the swap runs only after validate_request handed on its plan"
    manager, users = _auth_manager()

    def record(decision: SwapDecision) -> None:
        verdict = decision.verdict
        ti.xcom_push(key=DECISION_KEY, value=verdict.to_xcom())
        if verdict.decision == "rejected":
            log.info("the swap was rejected by %s: production unchanged", verdict.by)
        elif not verdict.approved:
            audit_event(
                context,
                params,
                "refused",
                f"swap refused, production unchanged: {verdict.why}",
                approvals=[verdict.as_audit()],
                details={"swap_digest": decision.plan_digest, "approvers": list(decision.eligible)},
            )
        else:
            audit_event(
                context,
                params,
                "approved",
                f"swap approved by {verdict.by}",
                approvals=[verdict.as_audit()],
                details={"swap_digest": decision.plan_digest},
            )

    swapped = swap_after_answer(
        event,
        ApprovalRequest.from_xcom(asked) if asked else None,
        plan,
        settings=policy.dr_restore,
        triggering_user=_triggering_user(context["dag_run"]),
        auth_manager=manager,
        simple_auth_manager_users=users,
        admin=_admin(policy),
        on_verdict=record,
    )
    return swapped.to_xcom() if swapped else None


def decision_given(ti: Any) -> ApprovalVerdict | None:
    """The decision the swap task made on the answer (for the final audit record), or None."""
    from hms_dr.dr.approval import ApprovalVerdict

    decision = ti.xcom_pull(task_ids=SWAP_TASK_ID, key=DECISION_KEY)
    return ApprovalVerdict.from_xcom(decision) if decision else None


@task
@records_failure
@engine_errors_decide_retry
def check_production_after_swap() -> dict[str, Any]:
    """After the commit: each name reaches the restored table, the old one is quarantined, keys,
    views, owner, grants and sequences follow; the tables are analyzed. A swap task that ended
    without a result never swapped (it was set to success by hand): that is refused and audited."""
    from hms_dr.dr.after_swap import check_production_after_swap as check_production
    from hms_dr.dr.approved_swap import SwapDone

    context = get_current_context()
    swapped = context["ti"].xcom_pull(task_ids=SWAP_TASK_ID)
    return check_production(
        SwapDone.from_xcom(swapped) if swapped else None,
        admin=_admin(load_policy()),
        on_unapproved=lambda line: audit_event(context, dict(context["params"]), "refused", line),
    ).to_xcom()


# -- 5. audit ------------------------------------------------------------------------------------


@task
def record_outcome() -> str:
    """Teardown: the audit record of how the run ended — swapped, restored without a swap,
    rejected, or failed with the first failing step's reason — with the approvals given."""
    from hms_dr.dr.after_swap import AfterSwapChecks
    from hms_dr.dr.approved_swap import SwapDone
    from hms_dr.dr.check_restored import RestoredTablesChecked
    from hms_dr.dr.outcome import restore_outcome
    from hms_dr.dr.restore_into_target import RestoredIntoTarget

    context = get_current_context()
    ti = context["ti"]

    def pulled(task_id: str) -> Any:
        return ti.xcom_pull(task_ids=task_id) or None

    restored, checked, swapped, after = (
        pulled(task_id)
        for task_id in ("restore_into_target", "check_restored_tables", SWAP_TASK_ID, "check_production_after_swap")
    )
    approval = decision_given(ti)
    ended = restore_outcome(
        plan=_pulled_plan(ti),
        restored=RestoredIntoTarget.from_xcom(restored) if restored else None,
        checked=RestoredTablesChecked.from_xcom(checked) if checked else None,
        swapped=SwapDone.from_xcom(swapped) if swapped else None,
        after=AfterSwapChecks.from_xcom(after) if after else None,
        approval=approval,
        failures=[(task_id, ti.xcom_pull(task_ids=task_id, key=FAILURE_KEY)) for task_id in STEP_TASK_IDS],
    )
    audit_event(
        context,
        dict(context["params"]),
        ended.event,
        ended.outcome,
        details=ended.details,
        approvals=[approval.as_audit()] if approval else [],
    )
    return ended.outcome
