"""Who may approve a DR swap, and which answers approve it (hms_dr.dr.approval): only Approve, by
a person the policy names who did not trigger the run (unless the policy allows it), for exactly
the plan the form carried."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hms_dr.dr.approval import (
    APPROVE,
    REJECT,
    ApprovalAnswer,
    ApprovalForm,
    eligible_approvers,
    form_problems,
    judge_answer,
    role_members,
)
from hms_dr.errors import ApprovalRefused, SwapRefused
from hms_dr.policy import DrRestorePolicy

DIGEST = "a3" * 32
OTHER = "b4" * 32
NOW = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
AT = datetime(2026, 11, 24, 14, 20, tzinfo=UTC)
POLICY = DrRestorePolicy(approvers=("alice", "bob"))


def answer(
    by: str | None = "bob", chosen: tuple[str, ...] = (APPROVE,), digest: str | None = DIGEST, name: str | None = None
) -> ApprovalAnswer:
    return ApprovalAnswer(
        chosen_options=chosen, responder_id=by, responder_name=name or by, responded_at=AT, plan_digest=digest
    )


def judge(
    given: ApprovalAnswer | None, *, settings: DrRestorePolicy = POLICY, triggered_by: str | None = "alice"
) -> tuple[str, str]:
    eligible = eligible_approvers(settings, triggered_by=triggered_by, members={})
    verdict = judge_answer(
        given, plan_digest=DIGEST, settings=settings, triggered_by=triggered_by, eligible=eligible, now=NOW
    )
    return verdict.decision, verdict.why


def test_a_second_named_user_approving_this_plan_approves() -> None:
    decision, why = judge(answer("bob"))
    assert decision == "approved" and DIGEST[:16] in why
    verdict = judge_answer(
        answer("bob"), plan_digest=DIGEST, settings=POLICY, triggered_by="alice", eligible=("bob",), now=NOW
    )
    assert verdict.as_audit().by == "bob" and verdict.as_audit().at == AT and verdict.as_audit().decision == "approved"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "no answer was recorded"),  # the task was set to success: nobody answered
        (answer(None), "has no responder"),  # a timeout default
        (answer("alice"), "alice triggered this run and may not approve its swap (four eyes"),
        (answer("carol"), "carol may not approve this swap: the approvers are bob"),
        (answer("bob", digest=OTHER), f"carries plan digest {OTHER[:16]}, not this run's plan {DIGEST[:16]}"),
        (answer("bob", digest=None), "carries plan digest none"),
        (answer("bob", chosen=(APPROVE, REJECT)), "chose ['Approve', 'Reject'], not Approve alone"),
        (answer("bob", chosen=()), "chose [], not Approve alone"),
    ],
    ids=[
        "no-answer",
        "no-responder",
        "self-approval",
        "not-an-approver",
        "another-plan",
        "no-digest",
        "two-options",
        "no-option",
    ],
)
def test_anything_but_an_approval_of_this_plan_by_another_named_user_is_refused(
    given: ApprovalAnswer | None, expected: str
) -> None:
    decision, why = judge(given)
    assert decision == "refused" and expected in why and "\n" not in why


def test_self_approval_is_refused_by_name_as_well_as_by_id() -> None:
    # An auth manager whose ids are numbers: the triggering user is recorded by name.
    decision, why = judge(answer("7", name="alice"), settings=DrRestorePolicy(approvers=("7", "bob")))
    assert decision == "refused" and "alice triggered this run" in why


def test_a_rejection_by_whoever_answered_stands() -> None:
    assert judge(answer("bob", chosen=(REJECT,)))[0] == "rejected"


def test_the_policy_may_allow_one_person_to_trigger_and_approve() -> None:
    single = DrRestorePolicy(approvers=("alice",), allow_self_approval=True)
    assert eligible_approvers(single, triggered_by="alice", members={}) == ("alice",)
    assert judge(answer("alice"), settings=single)[0] == "approved"


def test_without_a_triggering_user_four_eyes_cannot_be_checked() -> None:
    with pytest.raises(ApprovalRefused, match="records no triggering user"):
        eligible_approvers(POLICY, triggered_by=None, members={})
    verdict = judge_answer(
        answer("bob"), plan_digest=DIGEST, settings=POLICY, triggered_by=None, eligible=("bob",), now=NOW
    )
    assert verdict.decision == "refused" and "records no triggering user" in verdict.why


@pytest.mark.parametrize(
    ("settings", "triggered_by", "message"),
    [
        (DrRestorePolicy(), "alice", "nobody may approve the swap besides alice, who triggered the run"),
        (DrRestorePolicy(approvers=("alice",)), "alice", "nobody may approve the swap besides alice"),
        (DrRestorePolicy(approver_roles=("op",)), "alice", "name no one else"),
    ],
    ids=["nobody-named", "only-the-triggerer", "role-without-users"],
)
def test_a_swap_nobody_may_approve_is_refused_at_once(
    settings: DrRestorePolicy, triggered_by: str, message: str
) -> None:
    with pytest.raises(ApprovalRefused, match=message) as caught:
        eligible_approvers(settings, triggered_by=triggered_by, members={"admin": ("root",)})
    assert isinstance(caught.value, SwapRefused)


def test_roles_add_their_users_and_the_triggering_user_is_left_out() -> None:
    members = role_members(["admin:admin", "alice:op", "carol:OP", "dave:user", "erin:op:team_a", "broken"])
    assert members == {"admin": ("admin",), "op": ("alice", "carol", "erin"), "user": ("dave",)}
    settings = DrRestorePolicy(approvers=("bob", "carol"), approver_roles=("op",))
    assert eligible_approvers(settings, triggered_by="alice", members=members) == ("bob", "carol", "erin")
    verdict = judge_answer(
        answer("erin"),
        plan_digest=DIGEST,
        settings=settings,
        triggered_by="alice",
        eligible=("bob", "carol", "erin"),
        now=NOW,
    )
    assert verdict.decision == "approved"


def test_a_form_of_an_earlier_try_is_told_apart() -> None:
    wanted = ApprovalForm(body="rows now 10, restored 12", plan_digest=DIGEST, assigned=("bob", "carol"))
    assert form_problems(ApprovalForm("rows now 10, restored 12", DIGEST, ("carol", "bob")), wanted) == []
    problems = form_problems(ApprovalForm("rows now 9, restored 12", OTHER, ("bob",)), wanted)
    assert problems == [
        f"it carries plan digest {OTHER[:16]}, this run's plan is {DIGEST[:16]}",
        "its body shows other figures than this try measured",
        "it lets bob answer, the policy now bob, carol",
    ]
