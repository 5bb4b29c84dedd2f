"""Alerts from Airflow: the notifier chain each task calls when it fails for good, and each DAG's
Deadline Alerts, both built from the policy's ``alerts:`` section.

Every DAG file adds ``**alert_on_failure(policy)`` to its default_args and passes
``deadline=dag_deadlines(policy, dag_id)``. ``on_failure_callback`` runs only on a task's final
failure (``on_retry_callback`` on the tries before), in the task's own process. A missed
deadline runs :func:`alert_deadline_missed` in the triggerer, which imports it by its dotted path.
The message is the engine's (``hms_dr.alerts``); credentials come from Connections at send time.
"""

from __future__ import annotations

import json
import logging
import sys
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import (  # type: ignore[attr-defined]  # mypy misses these lazy exports
    AsyncCallback,
    BaseNotifier,
    Connection,
    DeadlineAlert,
    DeadlineReference,
)

from hms_dr.alerts import (
    MEASURED_FROM_SCHEDULED,
    Alert,
    DeadlineRule,
    deadline_rule,
    describe_deadline_miss,
    describe_task_failure,
    failure_reason,
    pages_on_call,
    render_chat_text,
    render_email,
    scrub_secrets,
    task_log_url,
)
from hms_dr.errors import AlertNotDelivered, PreflightFailed
from hms_dr.policy import AlertChannels, Policy, SlackChannel, SmtpChannel, SmtpSecurity, SnsChannel

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://localhost:8080/"


def alert_on_failure(policy: Policy) -> dict[str, Any]:
    """default_args entries that alert the policy's channels when a task fails for good."""
    return {"on_failure_callback": AlertChain(policy.alerts.channels)}


def parsed_by_dags_test(argv: Sequence[str] | None = None) -> bool:
    """Whether this process is ``airflow dags test`` (or ``python -m airflow dags test``)."""
    args = list(sys.argv if argv is None else argv)
    return args[1:3] == ["dags", "test"]


def dag_deadlines(policy: Policy, dag_id: str) -> list[DeadlineAlert]:
    """The DAG's Deadline Alerts from ``alerts.deadlines``: none when the policy sets none for it.

    None either when ``airflow dags test`` parses the DAG: in Airflow 3.3 a DAG with a deadline
    makes every ``dags test`` run end in an error (apache/airflow#73428), and a test run is late
    for nobody. Scheduled runs never come from that command, so no operator can switch the
    deadlines off by accident; the tests prove the deadline with a real scheduler instead.
    """
    if parsed_by_dags_test():
        return []
    rule = deadline_rule(policy.alerts, dag_id)
    if rule is None:
        return []
    reference = (
        DeadlineReference.DAGRUN_LOGICAL_DATE
        if rule.measured_from == MEASURED_FROM_SCHEDULED
        else DeadlineReference.DAGRUN_QUEUED_AT
    )
    kwargs = {
        "channels": policy.alerts.channels.to_dict(),
        "dag_id": dag_id,
        "within_s": int(rule.within.total_seconds()),
        "measured_from": rule.measured_from,
    }
    return [
        DeadlineAlert(
            reference=reference,
            interval=rule.within,
            callback=AsyncCallback(alert_deadline_missed, kwargs=kwargs),
            name=rule.name,
        )
    ]


def _base_url() -> str:
    """The Airflow UI's address, ``[api] base_url``: the links in alerts start with it."""
    from airflow.sdk.configuration import conf

    return str(conf.get("api", "base_url", fallback=DEFAULT_BASE_URL) or DEFAULT_BASE_URL)


class AlertChain(BaseNotifier):
    """An ``on_failure_callback``: one alert (DAG, task, run, the one-line reason, a link to the
    log) to every channel of the policy; none for a request the run's validation refused
    (``hms_dr.alerts.pages_on_call``). Holds channel settings only, never a credential."""

    template_fields = ()  # the message is built by hms_dr.alerts, not rendered by Jinja

    def __init__(self, channels: AlertChannels) -> None:
        super().__init__()
        self.channels = channels

    def notify(self, context: Any) -> None:
        exception = context.get("exception")
        if not pages_on_call(exception):
            log.warning(
                "not paging the on-call for a refused request (the run failed and says why): %s",
                failure_reason(exception).line,
            )
            return
        deliver(failure_alert(context), self.channels)


def failure_alert(context: Mapping[str, Any]) -> Alert:
    """The alert for the failed task instance of ``context``."""
    ti = context["ti"]
    task = context.get("task") or getattr(ti, "task", None)
    retries = getattr(task, "retries", None)
    try_number = getattr(ti, "try_number", None)
    map_index = getattr(ti, "map_index", None)
    return describe_task_failure(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=try_number,
        tries_allowed=retries + 1 if isinstance(retries, int) else None,
        reason=failure_reason(context.get("exception")),
        log_url=task_log_url(_base_url(), ti.dag_id, ti.run_id, ti.task_id, try_number, map_index),
        failed_at=getattr(ti, "end_date", None),
    )


async def alert_deadline_missed(
    channels: Mapping[str, Any],
    dag_id: str,
    within_s: int,
    measured_from: str,
    context: Mapping[str, Any] | None = None,
) -> str:
    """AsyncCallback of every DAG's deadline: runs in the triggerer with the run as the scheduler
    saw it when the deadline passed (``context["dag_run"]``, ``context["deadline"]``)."""
    from asgiref.sync import sync_to_async

    context = context or {}
    rule = DeadlineRule(dag_id=dag_id, within=timedelta(seconds=within_s), measured_from=measured_from)
    alert = describe_deadline_miss(
        rule=rule,
        dag_run=context.get("dag_run") or {},
        deadline_at=(context.get("deadline") or {}).get("deadline_time"),
        base_url=_base_url(),
    )
    # SMTP, Slack and SNS clients block: run them (and their Connection lookups) in a thread, as
    # Airflow's own sync_to_async does for hooks called from triggers.
    delivered = await sync_to_async(deliver, thread_sensitive=False)(alert, AlertChannels.from_dict(channels))
    return f"{alert.subject} (sent by {', '.join(delivered) or 'no channel'})"


def deliver(alert: Alert, channels: AlertChannels) -> list[str]:
    """Hand ``alert`` to every channel; a failing channel does not stop the others, and one
    AlertNotDelivered names each that failed. Returns the channels that took it."""
    senders: dict[str, Callable[[Alert, Any], None]] = {
        "smtp": send_email,
        "slack": post_to_slack,
        "sns": publish_to_sns,
    }
    if not channels.names():
        log.warning("no alert channel configured (policy alerts.smtp/slack/sns): %s", alert.subject)
        return []
    delivered: list[str] = []
    failed: list[str] = []
    for name in channels.names():
        try:
            senders[name](alert, getattr(channels, name))
        except Exception as exc:  # one channel down must not silence the others
            reason = scrub_secrets(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            log.error("alert not delivered by %s: %s", name, reason)
            failed.append(f"{name}: {reason}")
        else:
            delivered.append(name)
    if failed:
        raise AlertNotDelivered(f"alert {alert.subject!r} not delivered by " + "; ".join(failed))
    log.info("alert sent by %s: %s", ", ".join(delivered), alert.subject)
    return delivered


def _connection(conn_id: str) -> Any:
    try:
        return Connection.get(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends: one line, not a traceback
        raise PreflightFailed(f"Airflow connection {conn_id!r} is not defined: {exc}") from None


def send_email(alert: Alert, smtp: SmtpChannel) -> None:
    """E-mail the alert through the policy's SMTP server, logging in with its Connection if it names one."""
    import smtplib
    import ssl

    login = password = None
    if smtp.connection_id:
        conn = _connection(smtp.connection_id)
        login, password = conn.login or None, conn.password or None
    message = render_email(alert, sender=smtp.from_address, recipients=smtp.to)
    client: smtplib.SMTP
    if smtp.security is SmtpSecurity.SSL:
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_s, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
    with client:
        if smtp.security is SmtpSecurity.STARTTLS:
            client.starttls(context=ssl.create_default_context())
        if login:
            client.login(login, password or "")
        client.send_message(message)


def slack_webhook_url(conn: Any) -> str:
    """The webhook URL of a Slack Connection: its password, a full https URL, or host + password."""
    secret = (conn.password or "").strip()
    if secret.startswith("https://"):
        return secret
    host = (conn.host or "https://hooks.slack.com/services").strip().rstrip("/")
    if not host.startswith("https://"):
        host = "https://" + host.removeprefix("http://")
    if not secret:
        raise PreflightFailed(f"Slack connection {conn.conn_id!r} holds no webhook (password field)")
    return f"{host}/{secret.lstrip('/')}"


def post_to_slack(alert: Alert, slack: SlackChannel) -> None:
    """Post the alert to a Slack incoming webhook."""
    url = slack_webhook_url(_connection(slack.connection_id))
    body = json.dumps({"text": render_chat_text(alert)}).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def publish_to_sns(alert: Alert, sns: SnsChannel) -> None:
    """Publish the alert to the policy's SNS topic with the AWS Connection's credentials."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    # SNS subjects: at most 100 printable ASCII characters, no line breaks.
    subject = alert.subject.encode("ascii", "replace").decode("ascii").replace("\n", " ")[:100]
    SnsHook(aws_conn_id=sns.connection_id).publish_to_target(
        target_arn=sns.topic_arn, message=render_chat_text(alert), subject=subject
    )
