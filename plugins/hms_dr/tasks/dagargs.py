"""The default_args every hms-dr DAG gives its tasks: retries with exponential back-off and an
execution timeout from the DAG's policy section, and the failure alert."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from hms_dr.policy import Policy
from hms_dr.tasks.alerting import alert_on_failure


class RetrySettings(Protocol):
    """What a policy section says about its DAG's retries (wal, base_backup, offsite, dr, ...)."""

    @property
    def retries(self) -> int: ...
    @property
    def retry_delay_s(self) -> int: ...
    @property
    def max_retry_delay_s(self) -> int: ...


def task_defaults(
    policy: Policy, settings: RetrySettings, *, execution_timeout: timedelta | None = None, **extra: Any
) -> dict[str, Any]:
    """default_args for a DAG whose policy section is ``settings``: its ``execution_timeout_min``
    unless ``execution_timeout`` is given; ``extra`` adds or overrides keys."""
    # Not in RetrySettings: the DR sections have no execution_timeout_min and pass execution_timeout (the RTO).
    timeout = execution_timeout or timedelta(minutes=getattr(settings, "execution_timeout_min"))  # noqa: B009
    return {
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_s),
        "execution_timeout": timeout,
        **alert_on_failure(policy),
        **extra,
    }
