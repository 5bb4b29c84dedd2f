"""Retry is decided once, in hms_dr.tasks: an exception that is not the engine's own becomes one
line naming the step; a lost database connection is retried, anything else fails at once."""

from __future__ import annotations

import logging
import socket
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from hms_dr.errors import DatabaseUnavailable, PolicyInvalid, StoreUnavailable, UnexpectedFailure
from hms_dr.tasks.failures import engine_error_for, engine_errors_decide_retry


def refused_connection() -> psycopg.OperationalError:
    """A real libpq failure: nothing listens on the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        psycopg.connect(host="127.0.0.1", port=port, user="x", dbname="x", connect_timeout=2)
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("a connection to a closed port succeeded")


def wrapped(exc: BaseException, message: str) -> BaseException:
    """``exc`` as a library wraps it: raised from inside an except block."""
    try:
        try:
            raise exc
        except BaseException as inner:
            raise RuntimeError(message) from inner
    except RuntimeError as outer:
        return outer


class GxLikeError(Exception):
    """Stands for great_expectations' own exception classes (a module outside the engine)."""


GxLikeError.__module__ = "great_expectations.exceptions"


@pytest.mark.parametrize(
    ("make", "kind", "words"),
    [
        (
            lambda: KeyError("expectation_config"),
            UnexpectedFailure,
            ["check_against_baselines failed: KeyError: 'expectation_config'"],
        ),
        (
            lambda: GxLikeError("Unrecognized\ndata asset\n  smoke_query_1"),
            UnexpectedFailure,
            [
                "check_against_baselines failed in great_expectations: GxLikeError: Unrecognized data asset smoke_query_1"
            ],
        ),
        (
            lambda: psycopg.errors.UndefinedTable('relation "patients" does not exist'),
            UnexpectedFailure,
            ["failed in psycopg: UndefinedTable", "patients"],
        ),
        (
            lambda: psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
            UnexpectedFailure,
            ["QueryCanceled"],
        ),
        (
            refused_connection,
            DatabaseUnavailable,
            ["check_against_baselines lost its database connection: OperationalError"],
        ),
        (
            lambda: psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            DatabaseUnavailable,
            ["AdminShutdown"],
        ),
        (
            lambda: psycopg.errors.TooManyConnections("sorry, too many clients already"),
            DatabaseUnavailable,
            ["TooManyConnections"],
        ),
        (
            lambda: wrapped(refused_connection(), "Great Expectations could not run the batch"),
            DatabaseUnavailable,
            ["lost its database connection: RuntimeError: Great Expectations could not run the batch"],
        ),
        (
            lambda: sqlalchemy.exc.OperationalError("SELECT 1", {}, refused_connection()),
            DatabaseUnavailable,
            ["lost its database connection"],
        ),
        (lambda: ConnectionResetError(104, "Connection reset by peer"), DatabaseUnavailable, ["ConnectionResetError"]),
    ],
)
def test_a_foreign_exception_becomes_one_engine_line_naming_the_step(make: Any, kind: type, words: list[str]) -> None:
    error = engine_error_for(make(), "check_against_baselines")
    assert type(error) is kind
    assert error.transient is (kind is DatabaseUnavailable)
    assert "\n" not in error.message
    for word in words:
        assert word in error.message


def test_an_engine_error_is_its_own_decision() -> None:
    original = PolicyInvalid("policy.yaml: cluster.name is missing")
    assert engine_error_for(original, "any_step") is original


def run_task(exc: BaseException) -> Any:
    @engine_errors_decide_retry
    def check_against_baselines() -> None:
        raise exc

    return check_against_baselines()


def test_a_great_expectations_error_fails_the_task_at_once_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(AirflowFailException) as caught:
        run_task(GxLikeError("Unrecognized data asset\nsecond line"))
    assert str(caught.value) == (
        "UnexpectedFailure: check_against_baselines failed in great_expectations: GxLikeError: Unrecognized data asset second line"
    )
    assert "Traceback" in caplog.text  # the traceback stays in the task log for whoever fixes it


def test_a_lost_connection_propagates_for_airflow_to_retry() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        run_task(refused_connection())
    assert caught.value.transient and isinstance(caught.value.__cause__, psycopg.OperationalError)


@pytest.mark.parametrize(
    ("exc", "raised"),
    [
        (StoreUnavailable("s3://x unreachable"), StoreUnavailable),
        (AirflowSkipException("mode logical: no physical restore in this run"), AirflowSkipException),
        (PolicyInvalid("bad"), AirflowFailException),
    ],
)
def test_engine_errors_and_airflow_control_flow_keep_their_decision(exc: BaseException, raised: type) -> None:
    with pytest.raises(raised):
        run_task(exc)
