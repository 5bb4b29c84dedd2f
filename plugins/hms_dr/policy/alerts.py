"""The policy's ``alerts:`` section: where alerts go, how late a run may finish, how old a backup may get
(the offsite copies excepted: ``offsite.max_age_days``).

Channels name Airflow Connections for their credentials (the SMTP login, the Slack webhook, the
AWS keys) and never hold a secret themselves. Deadlines and maximum ages are durations written
with a unit (``90s``, ``10m``, ``2h``, ``8d``); a deadline may also be ``rto``, the policy's RTO target.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from hms_dr.policy.reader import PolicyReader, parse_duration

_DAG_ID = re.compile(r"^[a-z][a-z0-9_]{0,249}$")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_SNS_TOPIC = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
RTO = "rto"

log = logging.getLogger(__name__)


class FreshnessKind(StrEnum):
    """What the freshness check watches: a store's kinds, the offsite copy, and passed restore tests."""

    LOGICAL = "logical"
    BASE = "base"
    WAL = "wal"
    OFFSITE = "offsite"
    RESTORE_TEST = "restore-test"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


@dataclass(frozen=True)
class SmtpChannel:
    """E-mail through an SMTP server; ``connection_id`` (optional) holds its login and password."""

    host: str
    port: int
    from_address: str
    to: tuple[str, ...]
    connection_id: str | None = None
    security: SmtpSecurity = SmtpSecurity.NONE
    timeout_s: int = 30


@dataclass(frozen=True)
class SlackChannel:
    """A Slack incoming webhook; the Connection's password holds the webhook URL (a secret)."""

    connection_id: str


@dataclass(frozen=True)
class SnsChannel:
    """An SNS topic, published to with the AWS Connection's credentials."""

    topic_arn: str
    connection_id: str


@dataclass(frozen=True)
class AlertChannels:
    """Every configured channel; an alert goes to each of them. Plain data: it travels as kwargs
    of a deadline callback, so ``to_dict``/``from_dict`` round-trip it (no secret is in it)."""

    smtp: SmtpChannel | None = None
    slack: SlackChannel | None = None
    sns: SnsChannel | None = None

    def names(self) -> list[str]:
        return [name for name in ("smtp", "slack", "sns") if getattr(self, name) is not None]

    def to_dict(self) -> dict[str, Any]:
        smtp = None
        if self.smtp is not None:
            smtp = {
                "host": self.smtp.host,
                "port": self.smtp.port,
                "from": self.smtp.from_address,
                "to": list(self.smtp.to),
                "connection_id": self.smtp.connection_id,
                "security": self.smtp.security.value,
                "timeout_s": self.smtp.timeout_s,
            }
        return {
            "smtp": smtp,
            "slack": None if self.slack is None else {"connection_id": self.slack.connection_id},
            "sns": None
            if self.sns is None
            else {"topic_arn": self.sns.topic_arn, "connection_id": self.sns.connection_id},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertChannels:
        smtp = data.get("smtp")
        slack = data.get("slack")
        sns = data.get("sns")
        return cls(
            smtp=None
            if not smtp
            else SmtpChannel(
                host=str(smtp["host"]),
                port=int(smtp["port"]),
                from_address=str(smtp["from"]),
                to=tuple(smtp["to"]),
                connection_id=smtp.get("connection_id"),
                security=SmtpSecurity(smtp.get("security", "none")),
                timeout_s=int(smtp.get("timeout_s", 30)),
            ),
            slack=None if not slack else SlackChannel(connection_id=str(slack["connection_id"])),
            sns=None
            if not sns
            else SnsChannel(topic_arn=str(sns["topic_arn"]), connection_id=str(sns["connection_id"])),
        )


DEFAULT_DEADLINES: Mapping[str, str] = {
    "hms_daily_logical_backup": "2h",
    "hms_wal_archive": "10m",
    "hms_weekly_base_backup": "6h",
    "hms_offsite_sync": "6h",
    "hms_restore_test": RTO,
    "hms_backup_freshness": "10m",
    "hms_integrity_check": "4h",
}
# No offsite entry: how old the offsite copies may get is offsite.max_age_days (policy/offsite.py
# says why), which hms_backup_freshness judges too. The old alerts.freshness.max_age.offsite is
# still read, deprecated: a duration by parse_offsite, off by _watch_offsite below.
DEFAULT_MAX_AGE: Mapping[str, str] = {
    FreshnessKind.LOGICAL.value: "26h",
    FreshnessKind.BASE.value: "8d",
    FreshnessKind.WAL.value: "15m",
    FreshnessKind.RESTORE_TEST.value: "32d",
}
DEFAULT_FRESHNESS_SCHEDULE = "*/15 * * * *"


@dataclass(frozen=True)
class AlertsPolicy:
    channels: AlertChannels = field(default_factory=AlertChannels)
    # dag_id -> how long after its scheduled (or queued) time a run may take before an alert
    deadlines: Mapping[str, timedelta] = field(default_factory=dict)
    freshness_schedule: str = DEFAULT_FRESHNESS_SCHEDULE
    # kind -> how old its newest complete set may be; a kind left out is not watched; never
    # FreshnessKind.OFFSITE, whose limits are the offsite section's
    max_age: Mapping[FreshnessKind, timedelta] = field(default_factory=dict)
    # whether hms_backup_freshness also judges the offsite copies (against offsite.max_age_days)
    watch_offsite: bool = True


def describe_duration(duration: timedelta) -> str:
    """A timedelta as the policy writes it, in its largest whole unit: 2h, 90s, 8d."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_alerts(reader: PolicyReader, rto_minutes: int) -> AlertsPolicy:
    """The optional ``alerts:`` section; missing parts take the runbook's defaults (no channel
    at all when ``alerts`` is absent: nothing is sent, and the DAGs still load)."""
    section = reader.optional_mapping("alerts")

    def sub(name: str) -> dict[str, Any] | None:
        value = section.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise reader.fail(f"alerts.{name}", f"must be a mapping, got {value!r}")
        return value

    channels = AlertChannels(
        smtp=_smtp(reader, sub("smtp")),
        slack=_slack(reader, sub("slack")),
        sns=_sns(reader, sub("sns")),
    )
    deadlines = _durations(reader, "alerts.deadlines", {**DEFAULT_DEADLINES, **(sub("deadlines") or {})}, rto_minutes)
    for dag_id in deadlines:
        if not _DAG_ID.match(dag_id):
            raise reader.fail("alerts.deadlines", f"names {dag_id!r}, which is not a DAG id")
    freshness = sub("freshness") or {}
    fields = reader.cron_fields("alerts.freshness.schedule", freshness.get("schedule", DEFAULT_FRESHNESS_SCHEDULE))
    raw_ages = freshness.get("max_age")
    if raw_ages is not None and not isinstance(raw_ages, dict):
        raise reader.fail("alerts.freshness.max_age", f"must be a mapping of kind to duration, got {raw_ages!r}")
    own_ages = {
        name: age for name, age in (raw_ages or {}).items() if name != FreshnessKind.OFFSITE.value
    }  # parse_offsite reads it
    ages = _durations(reader, "alerts.freshness.max_age", {**DEFAULT_MAX_AGE, **own_ages}, rto_minutes, allow_rto=False)
    max_age: dict[FreshnessKind, timedelta] = {}
    for kind, age in ages.items():
        try:
            max_age[FreshnessKind(kind)] = age
        except ValueError:
            known = " | ".join(k.value for k in FreshnessKind)
            raise reader.fail("alerts.freshness.max_age", f"names {kind!r}; known kinds: {known}") from None
    return AlertsPolicy(
        channels=channels,
        deadlines=deadlines,
        freshness_schedule=" ".join(fields),
        max_age=max_age,
        watch_offsite=_watch_offsite(reader, freshness, raw_ages or {}),
    )


def _watch_offsite(reader: PolicyReader, freshness: Mapping[str, Any], raw_ages: Mapping[str, Any]) -> bool:
    """``alerts.freshness.watch_offsite`` (default true); the deprecated ``max_age.offsite: off``
    (or null) is read as false when it is not set. A duration there is the offsite section's."""
    watch = freshness.get("watch_offsite")
    if watch is not None and not isinstance(watch, bool):
        raise reader.fail("alerts.freshness.watch_offsite", f"must be true or false, got {watch!r}")
    if FreshnessKind.OFFSITE.value in raw_ages and raw_ages[FreshnessKind.OFFSITE.value] in (None, "off"):
        if watch is None:
            log.warning(
                "%s: alerts.freshness.max_age.offsite: off is deprecated: read as alerts.freshness.watch_offsite: false; "
                "write that instead (how old offsite copies may get is offsite.max_age_days)",
                reader.source,
            )
            return False
        log.warning(
            "%s: alerts.freshness.max_age.offsite is deprecated and ignored: alerts.freshness.watch_offsite is set; "
            "remove the old key",
            reader.source,
        )
    return True if watch is None else watch


def _durations(
    reader: PolicyReader, key: str, raw: Mapping[str, Any], rto_minutes: int, *, allow_rto: bool = True
) -> dict[str, timedelta]:
    """Each value a duration; ``null`` (or ``off``) switches one entry off."""
    parsed: dict[str, timedelta] = {}
    for name, value in raw.items():
        if value is None or value == "off":
            continue
        if allow_rto and value == RTO:
            parsed[str(name)] = timedelta(minutes=rto_minutes)
            continue
        try:
            parsed[str(name)] = parse_duration(value)
        except ValueError as exc:
            raise reader.fail(f"{key}.{name}", str(exc)) from None
    return parsed


def _smtp(reader: PolicyReader, raw: dict[str, Any] | None) -> SmtpChannel | None:
    if raw is None:
        return None
    for secret in ("password", "login", "user"):
        if secret in raw:
            raise reader.fail(
                f"alerts.smtp.{secret}",
                "must not be in the policy: put credentials in the Connection named by alerts.smtp.connection_id",
            )
    port = raw.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise reader.fail("alerts.smtp.port", f"must be a TCP port, got {port!r}")
    sender = reader.text_value("alerts.smtp.from", raw.get("from"))
    if not _ADDRESS.match(sender):
        raise reader.fail("alerts.smtp.from", f"must be an e-mail address, got {sender!r}")
    to = raw.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and _ADDRESS.match(a.strip()) for a in to):
        raise reader.fail("alerts.smtp.to", f"must be a list of e-mail addresses, got {to!r}")
    connection_id = raw.get("connection_id")
    if connection_id is not None:
        connection_id = reader.text_value("alerts.smtp.connection_id", connection_id)
    try:
        security = SmtpSecurity(raw.get("security", SmtpSecurity.NONE.value))
    except ValueError:
        raise reader.fail(
            "alerts.smtp.security", f"must be one of none | starttls | ssl, got {raw.get('security')!r}"
        ) from None
    timeout_s = raw.get("timeout_s", 30)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or not 1 <= timeout_s <= 300:
        raise reader.fail(
            "alerts.smtp.timeout_s", f"must be a whole number of seconds from 1 to 300, got {timeout_s!r}"
        )
    return SmtpChannel(
        host=reader.text_value("alerts.smtp.host", raw.get("host")),
        port=port,
        from_address=sender,
        to=tuple(a.strip() for a in to),
        connection_id=connection_id,
        security=security,
        timeout_s=timeout_s,
    )


def _slack(reader: PolicyReader, raw: dict[str, Any] | None) -> SlackChannel | None:
    if raw is None or raw.get("connection_id") is None:
        return None
    if "webhook_url" in raw:
        raise reader.fail(
            "alerts.slack.webhook_url",
            "must not be in the policy: a webhook URL is a secret, put it in the Connection's password",
        )
    return SlackChannel(connection_id=reader.text_value("alerts.slack.connection_id", raw.get("connection_id")))


def _sns(reader: PolicyReader, raw: dict[str, Any] | None) -> SnsChannel | None:
    if raw is None or raw.get("topic_arn") is None:
        return None
    topic = reader.text_value("alerts.sns.topic_arn", raw.get("topic_arn"))
    if not _SNS_TOPIC.match(topic):
        raise reader.fail(
            "alerts.sns.topic_arn", f"must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>), got {topic!r}"
        )
    return SnsChannel(
        topic_arn=topic, connection_id=reader.text_value("alerts.sns.connection_id", raw.get("connection_id"))
    )
