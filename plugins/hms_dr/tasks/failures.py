"""Retry is decided here, once: transient engine errors propagate so Airflow retries them;
every other engine error fails the task at once, because retrying a wrong answer wastes time."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from hms_dr.errors import HmsDrError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def engine_errors_decide_retry(func: F) -> F:
    """Wrap a task callable: HmsDrError -> one log line, then retry (transient) or fail now."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HmsDrError as exc:
            log.error("%s: %s", type(exc).__name__, exc.message)
            if exc.hint:
                log.error("HINT: %s", exc.hint)
            if exc.transient:
                raise
            raise AirflowFailException(f"{type(exc).__name__}: {exc.message}") from None

    return wrapper  # type: ignore[return-value]
