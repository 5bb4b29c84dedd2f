"""Connections to the protected PostgreSQL database, with failures turned into one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hms_dr.errors import DatabaseUnavailable
from hms_dr.pgtools import ConnectionInfo


@contextmanager
def connect(conn: ConnectionInfo, *, autocommit: bool = True) -> Iterator[Any]:
    """A psycopg connection; DatabaseUnavailable (transient) when the server cannot be reached."""
    import psycopg

    try:
        connection = psycopg.connect(autocommit=autocommit, **conn.psycopg_kwargs())  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {conn.describe()}: {first_line(exc)}") from None
    try:
        yield connection
    finally:
        connection.close()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
