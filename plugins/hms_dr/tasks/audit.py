"""The Airflow side of the DR audit trail: one call writes a record of this run (who triggered
it, when, why, with which params and approvals, how it ended) to the primary store and the task
log, with the run's facts taken from the task context.

    audit_event(get_current_context(), params, "started")
    audit_event(context, params, "succeeded", "cluster up on 127.0.0.1:5433", {"rto_s": 812.4})
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from airflow.sdk import get_current_context

from hms_dr.audit import Approval, AuditRecord, write_audit_record
from hms_dr.policy import load_policy
from hms_dr.tasks.connections import open_policy_store

UNKNOWN_USER = "unknown (no triggering user recorded)"
SCHEDULED_RUN_TYPES = ("scheduled", "asset_triggered", "backfill")


def triggered_by(dag_run: Any) -> str:
    """The Airflow user who triggered the run (``dag_test`` under ``airflow dags test``), or
    "scheduler" for a run the scheduler made."""
    name = getattr(dag_run, "triggering_user_name", None)
    if name:
        return str(name)
    run_type = str(getattr(getattr(dag_run, "run_type", None), "value", getattr(dag_run, "run_type", "")) or "")
    return "scheduler" if run_type in SCHEDULED_RUN_TYPES else UNKNOWN_USER


def run_queued_at(dag_run: Any) -> datetime:
    """When the run was asked for: ``run_after`` (for a manual run, the moment it was triggered;
    the task context carries no ``queued_at``)."""
    for name in ("run_after", "start_date", "logical_date"):
        moment = getattr(dag_run, name, None)
        if isinstance(moment, datetime):
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


def audit_event(
    context: Mapping[str, Any],
    params: Mapping[str, Any],
    event: str,
    outcome: str = "",
    details: Mapping[str, Any] | None = None,
    approvals: Sequence[Approval] = (),
) -> str:
    """Write one audit record of the running DR run; returns its key in the primary store.

    :param event: started | approved | rejected | succeeded | failed.
    :param params: the run's params as the operator gave them (``reason`` among them).
    """
    dag_run = context["dag_run"]
    policy = load_policy()
    record = AuditRecord(
        dag_id=str(dag_run.dag_id),
        run_id=str(dag_run.run_id),
        triggered_by=triggered_by(dag_run),
        started_at=run_queued_at(dag_run),
        reason=str(params.get("reason") or ""),
        params=dict(params),
        event=event,
        outcome=outcome,
        approvals=tuple(approvals),
        details=dict(details or {}),
    )
    return write_audit_record(open_policy_store(policy), policy.cluster.name, record)


FAILURE_KEY = "failure"
F = TypeVar("F", bound=Callable[..., Any])


def records_failure(func: F) -> F:
    """Keep a failing task's one-line reason in its XCom (key ``failure``) for the audit record,
    then let the failure go on as it was."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            get_current_context()["ti"].xcom_push(key=FAILURE_KEY, value=line)
            raise

    return wrapper  # type: ignore[return-value]
