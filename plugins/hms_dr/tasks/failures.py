"""Retry is decided here, once: transient engine errors propagate so Airflow retries them;
every other engine error fails the task at once, because retrying a wrong answer wastes time.

An exception that is not the engine's own (Great Expectations, psycopg, a KeyError) is first
turned into one: a lost database connection into DatabaseUnavailable (worth a retry), anything
else into UnexpectedFailure naming the step, which fails at once instead of retrying for minutes
and paging with a raw library traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from hms_dr.errors import DatabaseUnavailable, HmsDrError, UnexpectedFailure

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# SQLSTATE classes of a server that is unreachable, going down or full: worth another attempt.
# 08 connection exception, 53 insufficient resources (too many connections), 57P admin/crash
# shutdown and cannot-connect-now (not 57014, a cancelled statement: it would be cancelled again).
_TRANSIENT_SQLSTATES = ("08", "53", "57P")
_CHAIN_LIMIT = 10


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: __cause__/__context__, and SQLAlchemy's ``orig`` (GX's engine)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < _CHAIN_LIMIT:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return chain


def _lost_connection(exc: BaseException) -> bool:
    """A connection that could not be made or was lost (by class, not by message text)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "OperationalError" not in names and "InterfaceError" not in names:
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    # psycopg: no SQLSTATE means the failure came from libpq (refused, reset, closed), not the server.
    return sqlstate is None or str(sqlstate).startswith(_TRANSIENT_SQLSTATES)


def engine_error_for(exc: Exception, step: str) -> HmsDrError:
    """The engine error an exception raised in ``step`` stands for (a pure decision)."""
    if isinstance(exc, HmsDrError):
        return exc
    text = " ".join(str(exc).split())
    detail = f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
    if any(_lost_connection(cause) for cause in _causes(exc)):
        return DatabaseUnavailable(f"{step} lost its database connection: {detail}")
    origin = type(exc).__module__.split(".")[0]
    where = f" in {origin}" if origin not in ("builtins", "hms_dr") else ""
    return UnexpectedFailure(
        f"{step} failed{where}: {detail}",
        hint="not a failure the engine knows: retrying will not help; the task log holds the traceback",
    )


def engine_errors_decide_retry(func: F) -> F:
    """Wrap a task callable: any failure -> one log line, then retry (transient) or fail now."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AirflowException:
            raise  # Airflow's own control flow: skip, fail, reschedule
        except Exception as raised:
            exc = engine_error_for(raised, func.__name__)
            if exc is not raised:
                log.exception(
                    "%s raised %s", func.__name__, type(raised).__name__
                )  # the traceback, for whoever fixes it
            log.error("%s: %s", type(exc).__name__, exc.message)
            if exc.hint:
                log.error("HINT: %s", exc.hint)
            if exc.transient:
                if exc is raised:
                    raise
                raise exc from raised
            raise AirflowFailException(f"{type(exc).__name__}: {exc.message}") from None

    return wrapper  # type: ignore[return-value]
