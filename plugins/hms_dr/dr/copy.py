"""Copying restored tables from the disposable source into production, streamed and atomic.

pg_restore cannot restore a table into another schema, and ``pg_restore -t`` restores a table
without its indexes, constraints or the types it needs. So the source (``staging``) is a full
restore — the whole logical set in a scratch database, or a scratch cluster recovered to the
point in time — in which the requested tables are moved into a schema named like the staging
schema. Then::

    pg_dump --schema=<staging> --no-owner --no-privileges  (source)
      | psql --single-transaction -v ON_ERROR_STOP=1        (production's database)

streams exactly that schema — tables, rows, owned sequences and their values, indexes, primary
keys, unique and check constraints, triggers, comments — into production, where it references
production's own types and functions by name. Nothing is staged on disk; psql runs it as one
transaction, so the staging schema appears whole or not at all (a retry starts clean). For
``new_database`` the source keeps only the requested tables and the whole database is dumped
into the new, empty database the same way. Owners and grants are left out (the restore server
need not have production's roles): the swap copies them from the tables it replaces.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hms_dr.database import client_tools, connect
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo, tool_env
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def dump_argv(pg: PgInstall, *, schema: str | None) -> list[str]:
    """pg_dump of one schema (or, with None, the whole database) as plain SQL on stdout; the
    connection comes from the environment."""
    argv = [
        pg.program("pg_dump"),
        "--format=plain",
        "--no-owner",
        "--no-privileges",
        "--no-password",
        # A copy must never start replicating from, or publishing to, anywhere.
        "--no-subscriptions",
        "--no-publications",
    ]
    if schema is not None:
        argv.append(f'--schema="{schema}"')  # quoted: an exact name, not a pattern
    return argv


def load_argv(pg: PgInstall) -> list[str]:
    """psql running its stdin as one transaction, stopping at the first error."""
    return [
        pg.program("psql"),
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
        "--output=/dev/null",
    ]


def copy_objects(source: ConnectionInfo, target: ConnectionInfo, *, schema: str | None) -> dict[str, Any]:
    """Stream ``schema`` of ``source`` (or all of it) into ``target`` in one transaction;
    ToolFailed names pg_dump's or psql's error (then the target holds nothing of it)."""
    started = time.monotonic()
    copied = 0

    def count(chunk: bytes) -> None:
        nonlocal copied
        copied += len(chunk)

    stages = [
        Stage("pg_dump", dump_argv(client_tools(source), schema=schema), env=tool_env(source)),
        Stage("psql", load_argv(client_tools(target)), env=tool_env(target)),
    ]
    with Pipeline(stages, tap=count, tap_after=1) as pipeline:
        while pipeline.output.read(CHUNK):
            pass
    seconds = time.monotonic() - started
    what = f"schema {schema}" if schema else "the database"
    log.info(
        "copied %s of %s into %s: %s of SQL, %s",
        what,
        source.describe(),
        target.describe(),
        human_bytes(copied),
        human_rate(copied, seconds),
    )
    return {"seconds": round(seconds, 3), "sql_bytes": copied}


def create_target_database(admin: ConnectionInfo, name: str, *, like: str) -> bool:
    """CREATE DATABASE ``name`` (template0) with the encoding, collation and owner of the
    database ``like``; False when it already exists (the caller proved it holds nothing)."""
    from psycopg import sql

    with connect(admin) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        row = connection.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            (like,),
        ).fetchone()
        encoding, collate, ctype, owner = row if row else ("UTF8", None, None, None)
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
            sql.Identifier(name), sql.Literal(encoding)
        )
        if collate and ctype:
            statement += sql.SQL(" LC_COLLATE {} LC_CTYPE {}").format(sql.Literal(collate), sql.Literal(ctype))
        if owner:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        connection.execute(statement)
    log.info("created database %s on %s:%s (like %s)", name, admin.host, admin.port, like)
    return True
