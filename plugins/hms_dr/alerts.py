"""Alerts: the message the on-call DBA gets when a task fails for good or a run misses its deadline.

Pure functions: they take what Airflow knows about the failure (DAG, task, run, the exception,
the UI's base URL) and return the subject and the plain-text body, one fact per line, with a
link to the log. Nothing here reads a clock, a Connection or the network; the channels that
deliver an alert (SMTP, Slack, SNS) live in ``hms_dr.tasks.alerting``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote

from hms_dr.errors import HmsDrError, RequestRefused
from hms_dr.policy import AlertsPolicy, describe_duration

SUBJECT_PREFIX = "[hms-dr]"
MAX_REASON_CHARS = 400
# DAGs whose runs come from their cron schedule: their deadline counts from the scheduled time
# (the run's logical date), so a scheduler that started the run late does not move it. Every
# other DAG (the restore test, triggered monthly, by new sets and by hand; the DR DAGs, only by
# hand) counts from when its run was queued: those runs may have no logical date at all.
SCHEDULED_DAG_IDS = frozenset(
    {
        "hms_daily_logical_backup",
        "hms_wal_archive",
        "hms_weekly_base_backup",
        "hms_offsite_sync",
        "hms_integrity_check",
        "hms_backup_freshness",
    }
)
MEASURED_FROM_SCHEDULED = "scheduled"
MEASURED_FROM_QUEUED = "queued"

# Credentials that could hide in a third-party error message: user:password@ in URLs and
# key=value / "key": "value" pairs with a secret-sounding key.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_SECRET_PAIRS = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|passphrase|secret|token|aws_secret_access_key|api_key)\b['\"]?\s*[=:]\s*['\"]?)[^\s'\",;]+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Alert:
    """One alert: a subject line and a plain-text body; ``kind`` is failure | deadline."""

    kind: str
    dag_id: str
    subject: str
    lines: tuple[str, ...]
    details: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        body = list(self.lines)
        if self.details:
            body += ["", "Details:", *(f"  - {line}" for line in self.details)]
        return "\n".join(body) + "\n"


@dataclass(frozen=True)
class FailureReason:
    """Why a task failed, for the operator: one line, an optional hint, optional detail lines."""

    line: str
    hint: str | None = None
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeadlineRule:
    """A DAG's deadline: its runs must finish ``within`` of their scheduled or queued time."""

    dag_id: str
    within: timedelta
    measured_from: str  # MEASURED_FROM_SCHEDULED | MEASURED_FROM_QUEUED

    @property
    def name(self) -> str:
        return f"{self.dag_id} finished within {describe_duration(self.within)} of its {self.measured_from} time"


def deadline_rule(alerts: AlertsPolicy, dag_id: str) -> DeadlineRule | None:
    """The policy's deadline for ``dag_id``, or None when it has none."""
    within = alerts.deadlines.get(dag_id)
    if within is None:
        return None
    measured_from = MEASURED_FROM_SCHEDULED if dag_id in SCHEDULED_DAG_IDS else MEASURED_FROM_QUEUED
    return DeadlineRule(dag_id=dag_id, within=within, measured_from=measured_from)


def scrub_secrets(text: str) -> str:
    """Blank out anything in ``text`` that looks like a credential (URL userinfo, password=...)."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_PAIRS.sub(lambda m: f"{m.group('key')}***", text)


def _one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def engine_error(exc: BaseException | None) -> HmsDrError | None:
    """The engine's own error behind ``exc``, if any: the tasks layer re-raises HmsDrError as
    AirflowFailException ``from None``, which keeps the original as ``__context__``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, HmsDrError):
            return current
        current = current.__cause__ or current.__context__
    return None


def pages_on_call(exc: BaseException | None) -> bool:
    """Whether a task that failed for good with ``exc`` pages the on-call: every failure does,
    except a request its run's validation refused (RequestRefused) — the operator who asked is
    the one to tell, and the run's failed state and its audit record do."""
    return not isinstance(engine_error(exc), RequestRefused)


def failure_reason(exc: BaseException | None) -> FailureReason:
    """The one-line reason for ``exc``: the engine's own error when there is one in its chain,
    else the exception's class and first line."""
    if exc is None:
        return FailureReason("no exception was recorded (the task was killed, timed out, or lost its worker)")
    error = engine_error(exc)
    if error is not None:
        problems = getattr(error, "problems", ())
        return FailureReason(
            scrub_secrets(_one_line(f"{type(error).__name__}: {error.message}")),
            hint=None if error.hint is None else scrub_secrets(_one_line(error.hint)),
            details=tuple(scrub_secrets(_one_line(p)) for p in problems),
        )
    message = _one_line(str(exc), limit=len(str(exc)) + 1)
    return FailureReason(
        scrub_secrets(_one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__))
    )


def task_log_url(
    base_url: str, dag_id: str, run_id: str, task_id: str, try_number: int | None, map_index: int | None = None
) -> str:
    """The task instance's page (its log) in the Airflow 3 UI."""
    mapped = f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""
    attempt = f"?try_number={try_number}" if try_number else ""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id)}{mapped}{attempt}"


def dag_run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page (its grid and every task's log) in the Airflow 3 UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def describe_task_failure(
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int | None,
    tries_allowed: int | None,
    reason: FailureReason,
    log_url: str,
    failed_at: datetime | None = None,
) -> Alert:
    """The alert for a task that failed for good (after its retries)."""
    tries = ""
    if try_number:
        tries = f"{try_number} of {tries_allowed}" if tries_allowed else str(try_number)
    lines = [
        f"{dag_id}: task {task_id} failed for good"
        + (f" after {try_number} tries." if try_number and try_number > 1 else "."),
        "",
        f"DAG:     {dag_id}",
        f"Task:    {task_id}",
        f"Run:     {run_id}",
    ]
    if tries:
        lines.append(f"Try:     {tries}")
    if failed_at is not None:
        lines.append(f"Failed:  {failed_at.isoformat(timespec='seconds')}")
    lines.append(f"Reason:  {reason.line}")
    if reason.hint:
        lines.append(f"HINT:    {reason.hint}")
    lines.append(f"Log:     {log_url}")
    return Alert(
        kind="failure",
        dag_id=dag_id,
        subject=f"{SUBJECT_PREFIX} FAILED {dag_id}.{task_id}: {_one_line(reason.line, 160)}",
        lines=tuple(lines),
        details=reason.details,
    )


def describe_deadline_miss(
    *,
    rule: DeadlineRule,
    dag_run: Mapping[str, Any],
    deadline_at: datetime | str | None,
    base_url: str,
) -> Alert:
    """The alert for a run not finished by its deadline. ``dag_run`` is the run as the scheduler
    hands it to the callback (the REST API's DAGRun fields: dag_run_id, state, queued_at, ...).
    A run that had already failed is still reported (the deadline is a safety net, and Airflow
    3.3 fires it after a failed run too, apache/airflow#60927), saying so."""
    run_id = str(dag_run.get("dag_run_id") or dag_run.get("run_id") or "?")
    state = str(dag_run.get("state") or "unknown")
    started = dag_run.get("logical_date") if rule.measured_from == MEASURED_FROM_SCHEDULED else dag_run.get("queued_at")
    deadline_text = (
        deadline_at.isoformat(timespec="seconds") if isinstance(deadline_at, datetime) else str(deadline_at or "?")
    )
    within = describe_duration(rule.within)
    if state == "failed":
        headline = (
            f"{rule.dag_id}: run {run_id} failed and did not finish within {within} of its {rule.measured_from} time."
        )
        verdict = "LATE (failed)"
    elif state == "success":
        headline = f"{rule.dag_id}: run {run_id} finished, but later than {within} after its {rule.measured_from} time."
        verdict = "LATE"
    else:
        headline = f"{rule.dag_id}: run {run_id} is still {state} {within} after its {rule.measured_from} time."
        verdict = "LATE"
    lines = [
        headline,
        "",
        f"DAG:      {rule.dag_id}",
        f"Run:      {run_id}",
        f"State:    {state}",
        f"{rule.measured_from.capitalize() + ':':<9} {started or '?'}",
        f"Deadline: {deadline_text} ({within} after the {rule.measured_from} time)",
        f"Run page: {dag_run_url(base_url, rule.dag_id, run_id)}",
    ]
    return Alert(
        kind="deadline",
        dag_id=rule.dag_id,
        subject=f"{SUBJECT_PREFIX} {verdict} {rule.dag_id}: not done within {within} of its {rule.measured_from} time",
        lines=tuple(lines),
    )


def render_email(alert: Alert, *, sender: str, recipients: Sequence[str], now: datetime | None = None) -> EmailMessage:
    """The alert as a plain-text e-mail, with headers a mail filter (or a test) can match on."""
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(now.timestamp() if now is not None else None, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["X-HMS-DR-Alert"] = alert.kind
    message["X-HMS-DR-DAG"] = alert.dag_id
    message.set_content(alert.text)
    return message


def render_chat_text(alert: Alert) -> str:
    """The alert for a chat or SMS-like channel (Slack, SNS): the subject, then the body."""
    return f"{alert.subject}\n{alert.text}"
