"""The policy's alerts section: channels without secrets, deadlines and max ages with units."""

from __future__ import annotations

import copy
import logging
import secrets
from datetime import timedelta
from typing import Any

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import (
    DEFAULT_POLICY_PATH,
    AlertChannels,
    FreshnessKind,
    SmtpSecurity,
    describe_duration,
    load_policy,
    parse_duration,
    parse_policy,
)


def committed() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def with_alerts(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(committed())
    for dotted, value in changes.items():
        node = data["alerts"]
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def test_committed_policy_emails_by_smtp_and_holds_the_issue_deadlines_and_ages() -> None:
    alerts = load_policy(DEFAULT_POLICY_PATH).alerts
    assert alerts is not None
    smtp = alerts.channels.smtp
    assert smtp is not None and smtp.security is SmtpSecurity.STARTTLS and smtp.connection_id == "hms_smtp"
    assert alerts.channels.slack is None and alerts.channels.sns is None
    assert alerts.deadlines["hms_daily_logical_backup"] == timedelta(hours=2)
    assert alerts.deadlines["hms_wal_archive"] == timedelta(minutes=10)
    assert alerts.deadlines["hms_restore_test"] == timedelta(minutes=240)  # "rto"
    assert alerts.max_age == {
        FreshnessKind.LOGICAL: timedelta(hours=26),
        FreshnessKind.BASE: timedelta(days=8),
        FreshnessKind.WAL: timedelta(minutes=15),
        FreshnessKind.RESTORE_TEST: timedelta(days=32),
    }
    assert alerts.watch_offsite is True  # the offsite copies: against offsite.max_age_days


def test_a_policy_without_alerts_loads_with_no_channel_and_the_default_deadlines() -> None:
    data = committed()
    del data["alerts"]
    alerts = parse_policy(data).alerts
    assert alerts is not None and alerts.channels.names() == []
    assert alerts.deadlines["hms_weekly_base_backup"] == timedelta(hours=6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        (" 8d ", timedelta(days=8)),
    ],
)
def test_durations_carry_their_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(describe_duration(expected)) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"smtp__password": secrets.token_urlsafe(12)}, "alerts.smtp.password must not be in the policy"),
        (
            {"slack__webhook_url": "https://hooks.slack.com/services/T/B/x", "slack__connection_id": "s"},
            "alerts.slack.webhook_url must not be in the policy",
        ),
        ({"smtp__to": ["not-an-address"]}, "alerts.smtp.to must be a list of e-mail addresses"),
        ({"smtp__port": 0}, "alerts.smtp.port must be a TCP port"),
        ({"smtp__security": "tls1.0"}, "alerts.smtp.security must be one of none | starttls | ssl"),
        ({"sns__topic_arn": "hms-dr-alerts"}, "alerts.sns.topic_arn must be an SNS topic ARN"),
        (
            {"deadlines__hms_daily_logical_backup": "2 hours"},
            "alerts.deadlines.hms_daily_logical_backup must be a duration",
        ),
        ({"deadlines__hms_daily_logical_backup": "0m"}, "must be longer than zero"),
        ({"freshness__max_age__logical": "rto"}, "alerts.freshness.max_age.logical must be a duration"),
        ({"freshness__max_age__snapshot": "1d"}, "alerts.freshness.max_age names 'snapshot'"),
        ({"freshness__schedule": "every 15 minutes"}, "alerts.freshness.schedule must be a 5-field cron"),
    ],
)
def test_a_bad_alerts_value_is_refused_with_a_line_naming_its_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(with_alerts(**changes), source="test.yaml")
    assert message in str(caught.value)
    assert "\n" not in caught.value.message


def test_a_deadline_or_an_age_set_to_null_is_switched_off() -> None:
    alerts = parse_policy(
        with_alerts(deadlines__hms_wal_archive=None, **{"freshness__max_age__restore-test": None})
    ).alerts
    assert alerts is not None
    assert "hms_wal_archive" not in alerts.deadlines
    assert FreshnessKind.RESTORE_TEST not in alerts.max_age


def test_channels_round_trip_as_plain_data_for_the_deadline_callback() -> None:
    data = with_alerts(
        slack__connection_id="hms_slack_alerts",
        sns__topic_arn="arn:aws:sns:eu-west-1:123456789012:hms-dr-alerts",
    )
    alerts = parse_policy(data).alerts
    assert alerts is not None
    channels = alerts.channels
    assert channels.names() == ["smtp", "slack", "sns"]
    assert AlertChannels.from_dict(yaml.safe_load(yaml.safe_dump(channels.to_dict()))) == channels


def _without_offsite_max_age() -> dict[str, Any]:
    data = with_alerts()
    data.get("offsite", {}).pop("max_age_days", None)
    return data


def test_the_deprecated_offsite_max_age_is_read_as_offsite_max_age_days_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = _without_offsite_max_age()
    data["alerts"]["freshness"]["max_age"]["offsite"] = "36h"
    with caplog.at_level(logging.WARNING):
        policy = parse_policy(data, source="old.yaml")
    assert policy.offsite.max_age_days == 2  # whole days, rounded up
    assert FreshnessKind.OFFSITE not in policy.alerts.max_age and policy.alerts.watch_offsite is True
    assert any(
        "old.yaml: alerts.freshness.max_age.offsite is deprecated: read as offsite.max_age_days: 2; write that instead"
        in r.getMessage()
        for r in caplog.records
    )


def test_the_offsite_section_wins_over_the_deprecated_key(caplog: pytest.LogCaptureFixture) -> None:
    data = with_alerts(freshness__max_age__offsite="3d")
    data.setdefault("offsite", {})["max_age_days"] = 9
    with caplog.at_level(logging.WARNING):
        policy = parse_policy(data, source="old.yaml")
    assert policy.offsite.max_age_days == 9
    assert any("alerts.freshness.max_age.offsite is deprecated and ignored" in r.getMessage() for r in caplog.records)


def test_the_deprecated_offsite_off_is_read_as_watch_offsite_false(caplog: pytest.LogCaptureFixture) -> None:
    data = with_alerts(freshness__max_age__offsite="off")  # an old file: no watch_offsite yet
    del data["alerts"]["freshness"]["watch_offsite"]
    with caplog.at_level(logging.WARNING):
        alerts = parse_policy(data, source="old.yaml").alerts
    assert alerts.watch_offsite is False and FreshnessKind.OFFSITE not in alerts.max_age
    assert any(
        "read as alerts.freshness.watch_offsite: false; write that instead" in r.getMessage() for r in caplog.records
    )
    assert parse_policy(with_alerts(freshness__watch_offsite=False)).alerts.watch_offsite is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"freshness__max_age__offsite": "soon"},
            "alerts.freshness.max_age.offsite must be a duration such as 90s, 10m, 2h or 8d, got 'soon' (deprecated: write offsite.max_age_days instead)",
        ),
        ({"freshness__watch_offsite": "yes"}, "alerts.freshness.watch_offsite must be true or false, got 'yes'"),
    ],
)
def test_a_bad_offsite_freshness_value_names_its_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(with_alerts(**changes), source="test.yaml")
    assert message in str(caught.value) and "\n" not in caught.value.message
