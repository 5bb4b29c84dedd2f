"""The swap task's decision on the answer Airflow resumed it with (hms_dr.dr.approved_swap) and
its form (hms_dr.dr.approval_request): nothing reaches production unless a named approver, not
the one who triggered the run, approved exactly the plan the form showed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from restore_plans import validated

from hms_dr.dr.after_swap import UNAPPROVED_SWAP, check_production_after_swap
from hms_dr.dr.approval import APPROVE, REJECT, SIMPLE_AUTH_MANAGER, ApprovalForm, ApprovalVerdict, approvers_for
from hms_dr.dr.approval_request import ApprovalRequest, ask_for_approval
from hms_dr.dr.approved_swap import SwapDecision, decide_on_answer, swap_after_answer
from hms_dr.dr.check_restored import RestoredTablesChecked
from hms_dr.errors import ApprovalRefused
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import DrRestorePolicy

DIGEST = "a3" * 32
NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
SETTINGS = DrRestorePolicy(approvers=("bob",), approver_roles=("op",), approval_timeout_hours=24)
USERS = "admin:admin,carol:op,alice:op"
ASKED = ApprovalRequest(plan_digest=DIGEST, approvers=("bob", "carol"))
# Never reached in these tests: every path here decides before anything is swapped.
NOWHERE = ConnectionInfo("127.0.0.1", 9, "nobody", "hospital_management", None)


def event(by: str | None, chosen: str = APPROVE, digest: str | None = DIGEST) -> dict[str, Any]:
    return {
        "chosen_options": [chosen],
        "responded_by_user": {"id": by, "name": by} if by else None,
        "responded_at": "2026-11-24T15:59:00+00:00",
        "params_input": {"plan_digest": digest} if digest else {},
    }


def swap(
    answer: dict[str, Any],
    asked: ApprovalRequest | None = ASKED,
    settings: DrRestorePolicy = SETTINGS,
    users: str = USERS,
    seen: list[SwapDecision] | None = None,
) -> tuple[Any, list[SwapDecision]]:
    seen = [] if seen is None else seen
    result = swap_after_answer(
        answer,
        asked,
        validated(swap_into_production=True),
        settings=settings,
        triggering_user="alice",
        auth_manager=SIMPLE_AUTH_MANAGER,
        simple_auth_manager_users=users,
        admin=NOWHERE,
        on_verdict=seen.append,
        now=NOW,
    )
    return result, seen


def test_approvers_are_the_named_users_and_the_roles_members_less_the_one_who_triggered() -> None:
    assert approvers_for(
        SETTINGS, triggered_by="alice", auth_manager=SIMPLE_AUTH_MANAGER, simple_auth_manager_users=USERS
    ) == ("bob", "carol")


def test_approver_roles_need_the_simple_auth_manager() -> None:
    with pytest.raises(
        ApprovalRefused, match=r"approver_roles needs Airflow's simple auth manager, this Airflow uses my\.Manager"
    ):
        approvers_for(SETTINGS, triggered_by="alice", auth_manager="my.Manager", simple_auth_manager_users=USERS)
    named_only = DrRestorePolicy(approvers=("bob",))
    assert approvers_for(named_only, triggered_by="alice", auth_manager="my.Manager", simple_auth_manager_users="") == (
        "bob",
    )


def test_a_rejection_is_recorded_and_swaps_nothing() -> None:
    result, seen = swap(event("bob", REJECT))
    assert result is None
    assert [(d.verdict.decision, d.verdict.by) for d in seen] == [("rejected", "bob")]


def test_self_approval_is_refused_before_anything_is_swapped() -> None:
    with pytest.raises(ApprovalRefused, match="swap refused, production unchanged: alice triggered this run"):
        swap(event("alice"))


def test_an_approval_for_another_plan_is_refused_and_recorded_first() -> None:
    seen: list[SwapDecision] = []
    with pytest.raises(ApprovalRefused, match="carries plan digest b4b4"):
        swap(event("bob", digest="b4" * 32), seen=seen)
    [decision] = seen
    assert (decision.verdict.decision, decision.verdict.by, decision.plan_digest, decision.eligible) == (
        "refused",
        "bob",
        DIGEST,
        ("bob", "carol"),
    )
    again = decide_on_answer(
        event("bob", digest="b4" * 32),
        ASKED,
        settings=SETTINGS,
        triggering_user="alice",
        auth_manager=SIMPLE_AUTH_MANAGER,
        simple_auth_manager_users=USERS,
        now=NOW,
    )
    assert again == decision


def test_someone_the_policy_took_off_while_the_form_waited_may_no_longer_approve() -> None:
    with pytest.raises(ApprovalRefused, match="carol may not approve this swap: the approvers are bob"):
        swap(event("carol"), users="admin:admin")  # carol is no longer an op


def test_no_answer_or_a_timeout_refuses_without_a_verdict() -> None:
    with pytest.raises(ApprovalRefused, match="no approval within 24 h: nothing swapped"):
        swap({"error": "timed out", "error_type": "timeout"})
    with pytest.raises(ApprovalRefused, match="no approval recorded: no request"):
        swap(event("bob"), asked=None)


def test_the_verdict_crosses_xcom_as_the_decision_the_audit_reads() -> None:
    verdict = ApprovalVerdict("approved", "bob", NOW, "approved plan a3a3")
    assert verdict.to_xcom() == {
        "decision": "approved",
        "by": "bob",
        "at": "2026-11-24T16:00:00+00:00",
        "why": "approved plan a3a3",
    }
    assert ApprovalVerdict.from_xcom(verdict.to_xcom()) == verdict


def checked() -> RestoredTablesChecked:
    return RestoredTablesChecked(
        rows_restored={"public.appointments": 8538},
        checks=None,
        approval_body="**manual__1** ...",
        swap_plan={"digest": DIGEST},
        rows_now={"public.appointments": 7723},
    )


def test_the_form_names_who_may_approve_and_carries_the_digest() -> None:
    written: list[ApprovalForm] = []

    def write(form: ApprovalForm) -> ApprovalForm:
        written.append(form)
        return form

    asked = ask_for_approval(
        checked(),
        settings=SETTINGS,
        triggering_user="alice",
        triggered_by="alice",
        auth_manager=SIMPLE_AUTH_MANAGER,
        simple_auth_manager_users=USERS,
        write_form=write,
    )
    assert asked == ApprovalRequest(plan_digest=DIGEST, approvers=("bob", "carol"))
    assert asked.to_xcom() == {"plan_digest": DIGEST, "approvers": ["bob", "carol"]}
    [form] = written
    assert form.assigned == ("bob", "carol") and form.plan_digest == DIGEST
    assert (
        "**Who may approve:** bob, carol (not alice, who triggered this run)" in form.body and DIGEST[:16] in form.body
    )


def test_an_earlier_tries_form_for_another_plan_is_refused() -> None:
    def stale(form: ApprovalForm) -> ApprovalForm:
        return ApprovalForm(body=form.body, plan_digest="b4" * 32, assigned=form.assigned)

    with pytest.raises(
        ApprovalRefused,
        match="the approval form Airflow keeps for this task is an earlier try's: it carries plan digest b4b4",
    ):
        ask_for_approval(
            checked(),
            settings=SETTINGS,
            triggering_user="alice",
            triggered_by="alice",
            auth_manager=SIMPLE_AUTH_MANAGER,
            simple_auth_manager_users=USERS,
            write_form=stale,
        )


def test_a_swap_task_set_to_success_by_hand_is_refused_and_reported() -> None:
    reported: list[str] = []
    with pytest.raises(ApprovalRefused, match="swap_into_production was set to success without an approval"):
        check_production_after_swap(None, admin=NOWHERE, on_unapproved=reported.append)
    assert reported == [UNAPPROVED_SWAP]
