"""The swap after the approval form was answered: the answer judged (``approval.judge_answer``)
against who may approve now AND who the form was assigned to, then — only on an approval — the
swap into production (``swap.execute_swap``) of exactly the approved plan.

No answer (the timeout sweep, or a resume without this task's own request) refuses; a rejection
returns None (production unchanged); any other answer that is not an approval refuses. The
caller's ``on_verdict`` records each verdict (decision and audit) before anything is swapped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hms_dr.dr.approval import ApprovalVerdict, answer_from_event, approvers_for, judge_answer
from hms_dr.dr.approval_request import ApprovalRequest
from hms_dr.dr.validated import ValidatedRestore
from hms_dr.errors import ApprovalRefused
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import DrRestorePolicy
from hms_dr.records import Record


@dataclass(frozen=True)
class SwapDecision:
    """A verdict on the answer, with the digest it was for and who was eligible to give it."""

    verdict: ApprovalVerdict
    plan_digest: str
    eligible: tuple[str, ...]


@dataclass(frozen=True)
class SwapDone(Record):
    """What the swap did (``swap.execute_swap``'s result), checked after it and audited."""

    quarantine_schema: str
    staging_schema: str
    digest: str
    seconds: float
    statements: int
    staging_schema_dropped: bool
    warnings: list[str]
    tables: list[dict[str, Any]]  # per table: names, oids, rows before and restored, owner, grants, keys, views


def decide_on_answer(
    event: Mapping[str, Any],
    asked: ApprovalRequest | None,
    *,
    settings: DrRestorePolicy,
    triggering_user: str | None,
    auth_manager: str,
    simple_auth_manager_users: str,
    now: datetime,
) -> SwapDecision:
    """The verdict on the answer Airflow resumed the swap task with; ApprovalRefused when there
    is no answer at all (a timeout, or no request of this task)."""
    if "error" in event or asked is None:
        raise ApprovalRefused(
            f"no approval within {settings.approval_timeout_hours} h: nothing swapped, production unchanged"
            if event.get("error_type") == "timeout"
            else f"no approval recorded: {event.get('error') or 'no request'}"
        )
    try:
        eligible_now = approvers_for(
            settings,
            triggered_by=triggering_user,
            auth_manager=auth_manager,
            simple_auth_manager_users=simple_auth_manager_users,
        )
    except ApprovalRefused:
        eligible_now = ()  # the policy changed while the form waited: nobody may approve now
    # Both lists: the form was assigned to these when it was asked (all an API that checks them
    # lets answer), and the policy as it is now may have taken someone off since.
    eligible = tuple(user for user in eligible_now if user in asked.approvers)
    verdict = judge_answer(
        answer_from_event(event),
        plan_digest=asked.plan_digest,
        settings=settings,
        triggered_by=triggering_user,
        eligible=eligible,
        now=now,
    )
    return SwapDecision(verdict=verdict, plan_digest=asked.plan_digest, eligible=eligible)


def swap_after_answer(
    event: Mapping[str, Any],
    asked: ApprovalRequest | None,
    plan: ValidatedRestore,
    *,
    settings: DrRestorePolicy,
    triggering_user: str | None,
    auth_manager: str,
    simple_auth_manager_users: str,
    admin: ConnectionInfo,
    on_verdict: Callable[[SwapDecision], None],
    now: datetime | None = None,
) -> SwapDone | None:
    """The swap's result on an approval, None on a rejection; ApprovalRefused otherwise."""
    from hms_dr.dr.swap import execute_swap

    decision = decide_on_answer(
        event,
        asked,
        settings=settings,
        triggering_user=triggering_user,
        auth_manager=auth_manager,
        simple_auth_manager_users=simple_auth_manager_users,
        now=now or datetime.now(UTC),
    )
    on_verdict(decision)
    verdict = decision.verdict
    if verdict.decision == "rejected":
        return None
    if not verdict.approved:
        raise ApprovalRefused(f"swap refused, production unchanged: {verdict.why}")
    assert plan.staging_schema is not None
    return SwapDone.from_xcom(
        execute_swap(
            admin,
            plan.table_names,
            staging_schema=plan.staging_schema,
            quarantine_schema=plan.quarantine_schema,
            approved_digest=decision.plan_digest,
            lock_timeout_s=settings.swap_lock_timeout_s,
        )
    )
