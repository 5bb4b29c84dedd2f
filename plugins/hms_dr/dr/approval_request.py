"""Asking for the swap's approval: the form this try shows (the checked tables' body, who may
approve, the plan's digest), written through the caller's ``write_form`` (Airflow's), refused
when Airflow keeps an earlier try's form that shows another plan, other figures or other
approvers (a cleared task instance keeps its first form)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hms_dr.dr.approval import PLAN_DIGEST, SHORT, ApprovalForm, approvers_for, form_problems
from hms_dr.dr.check_restored import RestoredTablesChecked
from hms_dr.errors import ApprovalRefused
from hms_dr.policy import DrRestorePolicy
from hms_dr.records import Record


@dataclass(frozen=True)
class ApprovalRequest(Record):
    """What the swap task asked (it is resumed with it): the plan's digest and who may answer."""

    plan_digest: str
    approvers: tuple[str, ...]


def approval_form(
    checked: RestoredTablesChecked, *, approvers: tuple[str, ...], settings: DrRestorePolicy, triggered_by: str
) -> ApprovalForm:
    """The form's body (the checked tables' body, then who may approve and the digest)."""
    digest = checked.swap_digest
    four_eyes = "" if settings.allow_self_approval else f" (not {triggered_by}, who triggered this run)"
    body = (
        f"{checked.approval_body}\n\n**Who may approve:** {', '.join(approvers)}{four_eyes}. The answer carries the plan "
        f"digest `{digest[:SHORT]}` (field `{PLAN_DIGEST}`): the swap runs only on **Approve** in this form, for this plan. "
        "Setting this task to success swaps nothing."
    )
    return ApprovalForm(body=body, plan_digest=digest, assigned=approvers)


def ask_for_approval(
    checked: RestoredTablesChecked,
    *,
    settings: DrRestorePolicy,
    triggering_user: str | None,
    triggered_by: str,
    auth_manager: str,
    simple_auth_manager_users: str,
    write_form: Callable[[ApprovalForm], ApprovalForm],
) -> ApprovalRequest:
    """``triggering_user``: the run's user (None when it records none); ``triggered_by``: how the
    audit names whoever triggered it. ``write_form`` writes the form and returns the one Airflow
    holds now."""
    approvers = approvers_for(
        settings,
        triggered_by=triggering_user,
        auth_manager=auth_manager,
        simple_auth_manager_users=simple_auth_manager_users,
    )
    wanted = approval_form(checked, approvers=approvers, settings=settings, triggered_by=triggered_by)
    problems = form_problems(write_form(wanted), wanted)
    if problems:
        raise ApprovalRefused(
            f"the approval form Airflow keeps for this task is an earlier try's: {'; '.join(problems)}",
            hint="trigger a new hms_dr_restore run: its form will show the swap as it is now",
        )
    return ApprovalRequest(plan_digest=checked.swap_digest, approvers=approvers)
