"""An alert names the DAG, the task, the run, the one-line reason and a link to the log; no secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hms_dr.alerts import (
    MEASURED_FROM_QUEUED,
    MEASURED_FROM_SCHEDULED,
    DeadlineRule,
    deadline_rule,
    describe_deadline_miss,
    describe_task_failure,
    failure_reason,
    pages_on_call,
    render_email,
    scrub_secrets,
    task_log_url,
)
from hms_dr.errors import (
    BackupsStale,
    HmsDrError,
    ParamInvalid,
    PreflightFailed,
    RequestRefused,
    SetNotFound,
    StoreUnavailable,
)
from hms_dr.policy import DEFAULT_POLICY_PATH, load_policy

BASE_URL = "http://airflow.hospital.example:8080/"
RUN_ID = "scheduled__2026-11-24T02:00:00+00:00"


class FailTask(Exception):
    """Stands in for AirflowFailException (the engine never imports airflow)."""


def raised_like_the_tasks_layer(error: HmsDrError) -> BaseException:
    """What engine_errors_decide_retry raises: a new exception ``from None``, the engine's as context."""
    try:
        try:
            raise error
        except HmsDrError as exc:
            raise FailTask(f"{type(exc).__name__}: {exc.message}") from None
    except FailTask as outer:
        return outer


def test_the_reason_is_the_engine_error_even_behind_the_tasks_layer_exception() -> None:
    error = PreflightFailed(
        "store s3://hms-backups is not writable: AccessDenied", hint="grant s3:PutObject to the backup role"
    )
    reason = failure_reason(raised_like_the_tasks_layer(error))
    assert reason.line == "PreflightFailed: store s3://hms-backups is not writable: AccessDenied"
    assert reason.hint == "grant s3:PutObject to the backup role"


def test_a_transient_engine_error_raised_as_is_gives_its_own_line() -> None:
    reason = failure_reason(StoreUnavailable("cannot reach http://127.0.0.1:1: Connection refused"))
    assert reason.line == "StoreUnavailable: cannot reach http://127.0.0.1:1: Connection refused"


def test_a_refused_request_does_not_page_and_every_other_failure_does() -> None:
    refused = RequestRefused(
        "hms_dr_restore has no param 'table' (did you mean 'tables'?): refused before anything was done"
    )
    assert not pages_on_call(raised_like_the_tasks_layer(refused))
    assert not pages_on_call(refused)
    # the system's problems page, also those found while validating a request
    for error in (
        ParamInvalid("restore target 127.0.0.1:5432 is the production cluster: refused"),  # a Connection, not a typo
        SetNotFound(
            "no complete wal backup set 000000010000000000000009", kind="wal", backup_set_id="000000010000000000000009"
        ),
        PreflightFailed("no free port on 127.0.0.1 in the policy's range 55432-55532"),
    ):
        assert pages_on_call(raised_like_the_tasks_layer(error)), error
    assert pages_on_call(StoreUnavailable("cannot reach http://127.0.0.1:1: Connection refused"))
    assert pages_on_call(RuntimeError("boom")) and pages_on_call(None)


def test_stale_backups_become_detail_lines() -> None:
    reason = failure_reason(raised_like_the_tasks_layer(BackupsStale(["logical: 27 h old", "wal: unknown"])))
    assert reason.line == "BackupsStale: logical: 27 h old; wal: unknown"
    assert reason.details == ("logical: 27 h old", "wal: unknown")


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (RuntimeError("boom\nTraceback (most recent call last): ..."), "RuntimeError: boom"),
        (TimeoutError(), "TimeoutError"),
        (ValueError("x" * 1000), "ValueError: " + "x" * 387 + "…"),
        (None, "no exception was recorded (the task was killed, timed out, or lost its worker)"),
    ],
)
def test_a_foreign_exception_gives_its_class_and_first_line(exc: BaseException | None, line: str) -> None:
    assert failure_reason(exc).line == line


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (
            "connect to postgresql://hms_backup:s3cr3t@db:5432/hms failed",
            "connect to postgresql://***@db:5432/hms failed",
        ),
        ("dsn host=db password=s3cr3t user=x", "dsn host=db password=*** user=x"),
        ('{"aws_secret_access_key": "AbC/123"}', '{"aws_secret_access_key": "***"}'),
        ("nothing secret here: pg_dump exited 1", "nothing secret here: pg_dump exited 1"),
    ],
)
def test_secrets_in_a_message_are_blanked(text: str, scrubbed: str) -> None:
    assert scrub_secrets(text) == scrubbed


def test_the_log_link_is_the_task_instance_page_of_the_airflow_3_ui() -> None:
    assert task_log_url(BASE_URL, "hms_daily_logical_backup", RUN_ID, "check_preconditions", 2) == (
        "http://airflow.hospital.example:8080/dags/hms_daily_logical_backup/runs/"
        "scheduled__2026-11-24T02%3A00%3A00%2B00%3A00/tasks/check_preconditions?try_number=2"
    )
    assert (
        task_log_url("http://h", "d", "r", "t", 1, map_index=3)
        == "http://h/dags/d/runs/r/tasks/t/mapped/3?try_number=1"
    )


def test_a_failure_alert_names_dag_task_run_reason_and_log() -> None:
    reason = failure_reason(
        PreflightFailed("pg_dump 14.2 is older than the server (15.18)", hint="install postgresql-client-15")
    )
    alert = describe_task_failure(
        dag_id="hms_daily_logical_backup",
        task_id="check_preconditions",
        run_id=RUN_ID,
        try_number=4,
        tries_allowed=4,
        reason=reason,
        log_url="http://x/log",
    )
    assert (
        alert.subject
        == "[hms-dr] FAILED hms_daily_logical_backup.check_preconditions: PreflightFailed: pg_dump 14.2 is older than the server (15.18)"
    )
    text = alert.text
    for expected in (
        "DAG:     hms_daily_logical_backup",
        "Task:    check_preconditions",
        f"Run:     {RUN_ID}",
        "Try:     4 of 4",
        "Reason:  PreflightFailed: pg_dump 14.2 is older than the server (15.18)",
        "HINT:    install postgresql-client-15",
        "Log:     http://x/log",
        "failed for good after 4 tries",
    ):
        assert expected in text


RULE = DeadlineRule("hms_daily_logical_backup", timedelta(hours=2), MEASURED_FROM_SCHEDULED)


@pytest.mark.parametrize(
    ("state", "subject", "headline"),
    [
        (
            "running",
            "[hms-dr] LATE hms_daily_logical_backup: not done within 2h of its scheduled time",
            "is still running 2h after",
        ),
        ("queued", "[hms-dr] LATE hms_daily_logical_backup", "is still queued 2h after"),
        # apache/airflow#60927: the deadline of a run that already failed still fires; say so
        ("failed", "[hms-dr] LATE (failed) hms_daily_logical_backup", "failed and did not finish within 2h"),
    ],
)
def test_a_deadline_alert_says_how_late_and_in_what_state(state: str, subject: str, headline: str) -> None:
    dag_run = {
        "dag_run_id": RUN_ID,
        "state": state,
        "logical_date": "2026-11-24T02:00:00Z",
        "queued_at": "2026-11-24T02:00:03Z",
    }
    alert = describe_deadline_miss(
        rule=RULE, dag_run=dag_run, deadline_at=datetime(2026, 11, 24, 4, tzinfo=UTC), base_url=BASE_URL
    )
    assert alert.subject.startswith(subject)
    assert headline in alert.lines[0]
    assert "Scheduled: 2026-11-24T02:00:00Z" in alert.text
    assert "Deadline: 2026-11-24T04:00:00+00:00 (2h after the scheduled time)" in alert.text
    assert (
        f"Run page: http://airflow.hospital.example:8080/dags/hms_daily_logical_backup/runs/{RUN_ID.replace(':', '%3A').replace('+', '%2B')}"
        in alert.text
    )


def test_scheduled_dags_count_from_the_scheduled_time_and_the_others_from_queued() -> None:
    alerts = load_policy(DEFAULT_POLICY_PATH).alerts
    assert alerts is not None
    expected = {
        "hms_daily_logical_backup": (timedelta(hours=2), MEASURED_FROM_SCHEDULED),
        "hms_wal_archive": (timedelta(minutes=10), MEASURED_FROM_SCHEDULED),
        "hms_weekly_base_backup": (timedelta(hours=6), MEASURED_FROM_SCHEDULED),
        "hms_offsite_sync": (timedelta(hours=6), MEASURED_FROM_SCHEDULED),
        "hms_restore_test": (timedelta(minutes=240), MEASURED_FROM_QUEUED),  # the RTO target
        "hms_dr_pitr": (timedelta(minutes=240), MEASURED_FROM_QUEUED),
    }
    for dag_id, (within, measured_from) in expected.items():
        rule = deadline_rule(alerts, dag_id)
        assert rule is not None and (rule.within, rule.measured_from) == (within, measured_from), dag_id
    assert deadline_rule(alerts, "hms_something_else") is None


def test_the_email_carries_the_alert_and_headers_to_filter_on() -> None:
    alert = describe_task_failure(
        dag_id="hms_wal_archive",
        task_id="measure_rpo",
        run_id="r1",
        try_number=1,
        tries_allowed=3,
        reason=failure_reason(BackupsStale(["wal: 16 min old"])),
        log_url="http://x/log",
    )
    message = render_email(alert, sender="hms-dr@h.example", recipients=["a@h.example", "b@h.example"])
    assert message["To"] == "a@h.example, b@h.example"
    assert message["X-HMS-DR-Alert"] == "failure" and message["X-HMS-DR-DAG"] == "hms_wal_archive"
    body = message.get_content()
    assert "Details:\n  - wal: 16 min old" in body and "Log:     http://x/log" in body
