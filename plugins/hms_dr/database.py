"""Connections to the protected PostgreSQL database, with failures turned into one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hms_dr.errors import DatabaseUnavailable
from hms_dr.pginstalls import PgInstall, client_install
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


def server_version(conn: ConnectionInfo) -> tuple[int, str]:
    """The server's major and version as it reports them: (18, '18.6')."""
    with connect(conn) as connection:
        number, text = connection.execute(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')"
        ).fetchone()
    return number // 10000, str(text).split()[0]


def client_tools(conn: ConnectionInfo) -> PgInstall:
    """The client programs (pg_dump, pg_restore, psql, pg_amcheck, pg_basebackup) for the server
    ``conn`` reaches: its major or the nearest newer one installed here; PreflightFailed otherwise."""
    major, version = server_version(conn)
    return client_install(major, server=f"the server at {conn.host}:{conn.port} ({version})")
