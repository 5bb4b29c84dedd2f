"""Scratch databases: created, named and dropped here only, each named for the kind of work it
serves, so that a drop can refuse anything that is not one, and never on the production cluster.

Two kinds exist because operators and the restore server's monitoring already know both names:
``hms_restore_test_<set>_<hex>`` (the restore test) and ``hms_dr_scratch_<run>_<hex>`` (the
whole logical set restored as the source of a DR restore).
"""

from __future__ import annotations

import logging
import re
import secrets
from enum import Enum

from hms_dr import sqlfiles
from hms_dr.database import connect
from hms_dr.errors import ParamInvalid
from hms_dr.pgtools import ConnectionInfo

log = logging.getLogger(__name__)

PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
KEY_CHARS = 36  # prefix (at most 17) + key + "_" + 6 hex stays within PostgreSQL's 63


class ScratchDatabaseKind(Enum):
    """What a scratch database is for; its value is the prefix every name of that kind carries."""

    RESTORE_TEST = "hms_restore_test_"  # a daily set restored and checked by hms_restore_test
    DR_SOURCE = "hms_dr_scratch_"  # a logical set restored as the source of a DR restore

    @property
    def prefix(self) -> str:
        return self.value


def scratch_database_name(kind: ScratchDatabaseKind, key: str) -> str:
    """A unique name per run, e.g. hms_restore_test_20261124t020001z_a1b2c3 or
    hms_dr_scratch_manual__2026_11_24t14_05_a1b2c3 (``key`` is lower-cased and cut to 36)."""
    name = f"{kind.prefix}{key.lower()[:KEY_CHARS]}_{secrets.token_hex(3)}"
    if not PLAIN_NAME.match(name):
        raise ParamInvalid(f"scratch database name {name!r} is not a plain lower-case identifier")
    return name


def scratch_kind_of(name: str) -> ScratchDatabaseKind | None:
    """The kind ``name`` is named like, or None when it is not a scratch database's name."""
    if not PLAIN_NAME.match(name):
        return None
    return next(
        (kind for kind in ScratchDatabaseKind if name.startswith(kind.prefix) and len(name) > len(kind.prefix)), None
    )


def refuse_unless_scratch(name: str, action: str) -> ScratchDatabaseKind:
    """ParamInvalid unless ``name`` is named like a scratch database: the one safety rule that
    keeps ``create`` and ``drop`` away from every other database on the server."""
    kind = scratch_kind_of(name)
    if kind is None:
        prefixes = " or ".join(f"{k.prefix}*" for k in ScratchDatabaseKind)
        raise ParamInvalid(f"refusing to {action} {name!r}: not a scratch database ({prefixes})")
    return kind


def refuse_production_target(
    *,
    target: ConnectionInfo,
    production: ConnectionInfo,
    scratch_name: str,
    target_system_id: str | None,
    production_system_id: str | None,
) -> None:
    """ParamInvalid when the restore would land in production: same database name on the same
    server, or the restore target server IS the production cluster (same system identifier)."""
    if not PLAIN_NAME.match(scratch_name):
        raise ParamInvalid(f"scratch database name {scratch_name!r} is not a plain lower-case identifier")
    if scratch_name == production.dbname:
        raise ParamInvalid(f"scratch database name {scratch_name!r} is the production database's name: refused")
    same_address = (target.host, target.port) == (production.host, production.port)
    if same_address and target.dbname == production.dbname:
        raise ParamInvalid(
            f"restore target {target.describe()} is the production database {production.describe()}: refused"
        )
    if target_system_id is not None and target_system_id == production_system_id:
        raise ParamInvalid(
            f"restore target {target.host}:{target.port} is the production cluster (system identifier "
            f"{target_system_id}): restore tests run on an isolated server",
            hint="point the hms_restore_target connection at a separate PostgreSQL server",
        )


def system_identifier(conn: ConnectionInfo) -> str:
    """The cluster's system identifier: what tells two servers apart whatever their address."""
    with connect(conn) as connection:
        row = connection.execute(sqlfiles.text("server_identity")).fetchone()
    return str(row[5])


def create_scratch_database(admin: ConnectionInfo, name: str) -> None:
    """CREATE DATABASE ``name`` (UTF8, from template0) on the restore server ``admin`` reaches."""
    from psycopg import sql

    refuse_unless_scratch(name, "create")
    with connect(admin) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        )
    log.info("created scratch database %s on %s:%s", name, admin.host, admin.port)


def drop_scratch_database(admin: ConnectionInfo, name: str) -> bool:
    """Drop a scratch database (only ever one named like one, sessions or not); True when it existed."""
    from psycopg import sql

    refuse_unless_scratch(name, "drop")
    with connect(admin) as connection:
        existed = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if existed:
        log.info("dropped scratch database %s on %s:%s", name, admin.host, admin.port)
    return existed
