"""Who may approve a DR swap into production, and whether an answer approves this run's swap.

The swap runs only on an answer a person gave in the swap's own approval form, for exactly the
plan that form showed (its digest), by someone the policy names as an approver, who is not the
user who triggered the run (four eyes) unless the policy allows one person to do both. Anything
else — no answer (a task marked success, a timeout), an answer without a responder, Reject, an
answer for another plan, an answer by someone else — is not an approval.

Plain data in, a verdict out: the Airflow side (``hms_dr.tasks.dr_restore``) gathers the policy,
the run's triggering user, the simple auth manager's users and the answer Airflow recorded, and
acts on the verdict; nothing here imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hms_dr.audit import Approval
from hms_dr.errors import ApprovalRefused
from hms_dr.policy import DrRestorePolicy
from hms_dr.records import Record

APPROVE = "Approve"
REJECT = "Reject"
PLAN_DIGEST = "plan_digest"  # the approval form's field that carries the plan's digest into the answer
SHORT = 16  # digest characters shown in a message (the approval body shows the same prefix)
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@dataclass(frozen=True)
class ApprovalForm:
    """What an approval form asks: the body the approver reads, the plan's digest it carries, and
    the user ids Airflow lets answer it."""

    body: str
    plan_digest: str | None
    assigned: tuple[str, ...]


@dataclass(frozen=True)
class ApprovalAnswer:
    """The answer Airflow recorded for the form (as the task is resumed with it)."""

    chosen_options: tuple[str, ...]
    responder_id: str | None  # None: no person answered (a timeout default, or the task itself)
    responder_name: str | None
    responded_at: datetime | None
    plan_digest: str | None  # the digest the answer carries back (its ``plan_digest`` field)


@dataclass(frozen=True)
class ApprovalVerdict(Record):
    """What the swap made of the answer (its XCom ``decision``, read by the run's audit record)."""

    decision: str  # "approved" | "rejected" | "refused"
    by: str
    at: datetime
    why: str  # one line

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    def as_audit(self) -> Approval:
        return Approval(by=self.by, at=self.at, decision=self.decision, comment=self.why)


def role_members(configured_users: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Role -> user names, from the simple auth manager's ``simple_auth_manager_users`` entries
    (``name:role`` or ``name:role:teams``); roles are case-insensitive there, so lower-cased."""
    members: dict[str, list[str]] = {}
    for entry in configured_users:
        parts = [part.strip() for part in entry.split(":")]
        if len(parts) >= 2 and parts[0] and parts[1]:
            members.setdefault(parts[1].lower(), []).append(parts[0])
    return {role: tuple(dict.fromkeys(names)) for role, names in members.items()}


def approvers_for(
    settings: DrRestorePolicy, *, triggered_by: str | None, auth_manager: str, simple_auth_manager_users: str
) -> tuple[str, ...]:
    """Who may approve this run's swap (refuses when nobody may). Approver roles are resolved from
    the simple auth manager's own user list (``core.simple_auth_manager_users``); another auth
    manager's roles cannot be read, so naming roles with one is refused."""
    members: dict[str, tuple[str, ...]] = {}
    if settings.approver_roles:
        manager = auth_manager or SIMPLE_AUTH_MANAGER
        if manager.rsplit(".", 1)[-1] != SIMPLE_AUTH_MANAGER.rsplit(".", 1)[-1]:
            raise ApprovalRefused(
                f"dr.restore.approver_roles needs Airflow's simple auth manager, this Airflow uses {manager}",
                hint="name the approvers' user ids in dr.restore.approvers instead",
            )
        members = role_members([entry for entry in simple_auth_manager_users.split(",") if entry.strip()])
    return eligible_approvers(settings, triggered_by=triggered_by, members=members)


def answer_from_event(event: Mapping[str, Any]) -> ApprovalAnswer:
    """The answer in the event Airflow resumes the swap task with (its keys:
    HITLDetail.as_resume_event_payload), as plain data."""
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


def eligible_approvers(
    settings: DrRestorePolicy, *, triggered_by: str | None, members: Mapping[str, Sequence[str]]
) -> tuple[str, ...]:
    """The user ids who may approve this run's swap: the ones the policy names and the users of
    the roles it names, less the user who triggered the run (unless ``allow_self_approval``).
    Refuses when that leaves nobody, so a run fails before its restore, not at its approval."""
    named = list(settings.approvers) + [user for role in settings.approver_roles for user in members.get(role, ())]
    if not settings.allow_self_approval:
        if not triggered_by:
            raise ApprovalRefused(
                "the run records no triggering user, so four eyes cannot be checked: nothing will be swapped",
                hint="trigger hms_dr_restore as yourself, from the UI or the REST API",
            )
        named = [user for user in named if user != triggered_by]
    eligible = tuple(dict.fromkeys(named))
    if not eligible:
        besides = (
            f" besides {triggered_by}, who triggered the run"
            if triggered_by and not settings.allow_self_approval
            else ""
        )
        raise ApprovalRefused(
            f"nobody may approve the swap{besides}: dr.restore.approvers and dr.restore.approver_roles name no one else",
            hint="name the approvers (Airflow user ids, or roles of the simple auth manager) in dr.restore of the policy",
        )
    return eligible


def form_problems(stored: ApprovalForm, wanted: ApprovalForm) -> list[str]:
    """Why the form Airflow holds is not the one this try asks (empty: it is). Airflow keeps the
    first form of a task instance when the task is cleared and runs again; an approver must never
    answer a form that shows an older plan, other figures or other approvers."""
    problems = []
    if stored.plan_digest != wanted.plan_digest:
        problems.append(
            f"it carries plan digest {_short(stored.plan_digest)}, this run's plan is {_short(wanted.plan_digest)}"
        )
    if stored.body != wanted.body:
        problems.append("its body shows other figures than this try measured")
    if sorted(stored.assigned) != sorted(wanted.assigned):
        problems.append(
            f"it lets {', '.join(sorted(stored.assigned)) or 'anyone'} answer, the policy now {', '.join(sorted(wanted.assigned))}"
        )
    return problems


def judge_answer(
    answer: ApprovalAnswer | None,
    *,
    plan_digest: str,
    settings: DrRestorePolicy,
    triggered_by: str | None,
    eligible: Sequence[str],
    now: datetime,
) -> ApprovalVerdict:
    """Approved only when a person the policy names, other than the triggering user (unless the
    policy allows it), chose exactly Approve on the form that carried ``plan_digest``, and the
    answer carries that digest back. A rejection by whoever answered the form stands (it only
    keeps production as it is); anything else is refused, with the reason in one line."""
    if answer is None:
        return ApprovalVerdict("refused", "nobody", now, "no answer was recorded: the swap was never approved")
    who = answer.responder_name or answer.responder_id
    at = answer.responded_at or now
    if not answer.responder_id or not who:
        return ApprovalVerdict(
            "refused", "nobody", at, "the answer has no responder (a timeout default is not an approval)"
        )
    if answer.chosen_options == (REJECT,):
        return ApprovalVerdict("rejected", who, at, "rejected in the approval form")
    if answer.chosen_options != (APPROVE,):
        return ApprovalVerdict("refused", who, at, f"{who} chose {list(answer.chosen_options)}, not {APPROVE} alone")
    if not settings.allow_self_approval and not triggered_by:
        return ApprovalVerdict("refused", who, at, "the run records no triggering user, so four eyes cannot be checked")
    if not settings.allow_self_approval and triggered_by in (answer.responder_id, answer.responder_name):
        return ApprovalVerdict(
            "refused",
            who,
            at,
            f"{who} triggered this run and may not approve its swap (four eyes: dr.restore.allow_self_approval is off)",
        )
    if answer.responder_id not in eligible:
        return ApprovalVerdict(
            "refused", who, at, f"{who} may not approve this swap: the approvers are {', '.join(eligible)}"
        )
    if answer.plan_digest != plan_digest:
        return ApprovalVerdict(
            "refused",
            who,
            at,
            f"the approval carries plan digest {_short(answer.plan_digest)}, not this run's plan {_short(plan_digest)}",
        )
    return ApprovalVerdict("approved", who, at, f"approved plan {_short(plan_digest)}")


def _short(digest: str | None) -> str:
    return "none" if not digest else digest[:SHORT]
