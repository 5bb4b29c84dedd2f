"""Measuring ahead of Great Expectations: the few rows costly checks compare with their baselines
(a view's fingerprint, a foreign key's orphan count: see ``plan.ObservedRows``) are computed on
hms-dr's own connections while GX is still being imported, so the database works while Python
loads; GX then validates those rows, handed to its check query as literal values.

The measuring connections carry the same session settings as GX's (the fingerprint's among them)
and run exactly the query GX would have run: GX's checks see the same rows they would have
computed. A check whose rows could not be measured (an error, no row, a value with no literal form
here) keeps its query, and GX runs it and reports whatever happens, as it would have without this
module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from hms_dr.database import first_line
from hms_dr.quality.plan import CheckKind, CheckPlan, PlannedCheck, quote_ident, quote_literal, unexpected_rows_query

log = logging.getLogger(__name__)

# Two: one for the heaviest query (a view's), one for the many short ones; the restore target is
# assumed to have at least two cores, as the restore itself runs pg_restore -j2.
MEASURING_CONNECTIONS = 2

# Settings of the measuring sessions, which change how fast the rows come, never which rows.
# No parallel workers: the measuring connections already run beside each other and beside GX, so
# workers only take CPU from them (on 2 cores a parallel plan cost the view +40% CPU). A larger
# work_mem: right after pg_restore there are no statistics, every aggregate is planned for 200
# groups, and at 4 MB the view's hash aggregates spilled to disk (-40% CPU at 64 MB). The restore
# target is an isolated test server; a measuring session uses a few such nodes at most.
MEASURING_SESSION_SETTINGS: Mapping[str, str] = {"max_parallel_workers_per_gather": "0", "work_mem": "64MB"}

_BIGINT = range(-(2**63), 2**63)


@dataclass(frozen=True)
class MeasuredRows:
    """What one check's observed query returned on a measuring connection."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    seconds: float


def literal_rows(measured: MeasuredRows) -> str | None:
    """A parenthesized query returning the measured rows, typed as PostgreSQL returned them; None
    when there is no row (VALUES needs one) or a value has no literal form here."""
    if not measured.rows:
        return None
    values = []
    for row in measured.rows:
        literals = [_literal(value) for value in row]
        if any(literal is None for literal in literals):
            return None
        values.append(f"({', '.join(literal for literal in literals if literal is not None)})")
    names = ", ".join(quote_ident(column) for column in measured.columns)
    return f"(SELECT * FROM (VALUES {', '.join(values)}) AS measured({names}))"


def _literal(value: Any) -> str | None:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"CAST({value} AS bigint)" if value in _BIGINT else f"CAST({quote_literal(str(value))} AS numeric)"
    if isinstance(value, Decimal) and value.is_finite():
        return f"CAST({quote_literal(str(value))} AS numeric)"
    if isinstance(value, str):
        return f"CAST({quote_literal(value)} AS text)"
    return None


def with_measured_rows(plan: CheckPlan, measured: Mapping[int, MeasuredRows]) -> CheckPlan:
    """The plan whose measured checks (by index in plan.checks) read the rows measured for them,
    and say so in their description (GX shows it in the Data Docs); every other check as it was."""
    checks = []
    for index, check in enumerate(plan.checks):
        rows = measured.get(index)
        source = literal_rows(rows) if rows is not None else None
        if rows is None or source is None or check.observed is None:
            checks.append(check)
            continue
        description = (
            f"{check.kwargs.get('description', check.target)} (measured by hms-dr in {rows.seconds:.1f} s"
            f" while Great Expectations loaded, with: {check.observed.query.strip()})"
        )
        checks.append(
            replace(
                check,
                kwargs={
                    **check.kwargs,
                    "description": description,
                    "unexpected_rows_query": unexpected_rows_query(check.observed, source),
                },
            )
        )
    return replace(plan, checks=tuple(checks))


class Measurement:
    """The observed rows of a plan's checks, being measured by worker threads, one connection each."""

    def __init__(self, plan: CheckPlan, connect_args: Mapping[str, Any], connections: int) -> None:
        work = [(index, check) for index, check in enumerate(plan.checks) if check.observed is not None]
        # A view's rows come from its whole query, usually the heaviest: started first, it does not
        # finish last, alone on one core.
        work.sort(key=lambda item: item[1].kind is not CheckKind.VIEW_ROWS)
        self._pending: deque[tuple[int, PlannedCheck]] = deque(work)
        self._count = len(work)
        tuning = " ".join(f"-c {name}={value}" for name, value in MEASURING_SESSION_SETTINGS.items())
        self._connect_args = {
            **connect_args,
            "application_name": "hms-dr quality (measuring ahead of GX)",
            "options": f"{connect_args.get('options') or ''} {tuning}".strip(),
        }
        self._measured: dict[int, MeasuredRows] = {}
        self._open: list[Any] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        self.add_connections(connections)

    def add_connections(self, count: int) -> None:
        """Measure on ``count`` more connections (never more than there are checks left)."""
        with self._lock:
            count = min(count, len(self._pending))
        for _ in range(count):
            thread = threading.Thread(target=self._work, name=f"hms-dr measuring {len(self._threads) + 1}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def complete(self, plan: CheckPlan) -> CheckPlan:
        """Wait for every measurement; the plan with the measured rows in it."""
        waited_from = time.monotonic()
        for thread in self._threads:
            thread.join()
        log.info(
            "%d of %d checks' rows measured ahead of Great Expectations in %.1f s (waited %.1f s for them)",
            len(self._measured),
            self._count,
            time.monotonic() - self._started,
            time.monotonic() - waited_from,
        )
        return with_measured_rows(plan, self._measured)

    def cancel(self) -> None:
        """Stop: cancel the queries still running, and wait for the threads to close their connections."""
        with self._lock:  # under the lock, so no worker takes another check after this
            self._stopping.set()
            running = list(self._open)
        for connection in running:
            try:
                connection.cancel_safe()
            except Exception as exc:  # the query may just have ended; the thread ends either way
                log.debug("cancelling a measuring query: %s", exc)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        import psycopg

        try:
            connection = psycopg.connect(autocommit=True, **self._connect_args)
        except psycopg.Error as exc:
            log.warning(
                "cannot open a measuring connection (Great Expectations runs those queries itself): %s", first_line(exc)
            )
            return
        with self._lock:
            self._open.append(connection)
        try:
            while True:
                with self._lock:
                    item = self._pending.popleft() if self._pending and not self._stopping.is_set() else None
                if item is None:
                    return
                self._measure(connection, *item)
        finally:
            with self._lock:
                self._open.remove(connection)
            connection.close()

    def _measure(self, connection: Any, index: int, check: PlannedCheck) -> None:
        import psycopg

        assert check.observed is not None
        started = time.monotonic()
        try:
            with connection.cursor() as cursor:
                cursor.execute(check.observed.query)
                columns = tuple(column.name for column in cursor.description or ())
                rows = tuple(tuple(row) for row in cursor.fetchall())
        except psycopg.Error as exc:
            if not self._stopping.is_set():
                log.warning(
                    "could not measure the rows of %s %s ahead of Great Expectations (it runs the query"
                    " itself and reports the outcome): %s",
                    check.kind.value,
                    check.target,
                    first_line(exc),
                )
            return
        # One key per thread and check: no two threads write the same entry.
        self._measured[index] = MeasuredRows(columns, rows, time.monotonic() - started)


@contextmanager
def measuring_ahead(
    plan: CheckPlan, connect_args: Mapping[str, Any], connections: int = MEASURING_CONNECTIONS
) -> Iterator[Measurement]:
    """Start measuring the plan's observed rows; whatever happens in the block, no measuring query
    or connection outlives it (the scratch database must stay droppable)."""
    measurement = Measurement(plan, connect_args, connections)
    try:
        yield measurement
    finally:
        measurement.cancel()
