"""The source a DR restore takes its tables from, and how it is readied for the copy.

For a logical backup set the source is a scratch database on the isolated restore server: the
whole set is restored there (types, functions and every table the requested ones may need), as
the restore test does. For a point in time it is a scratch cluster recovered to that point
(``physical.recovery.recover``) on a free port on this worker, its data directory under the
staging directory. Both are disposable: the tables to restore are moved there into a schema
named like the staging schema (and their foreign keys dropped: production's own are recreated
by the swap), so that a dump of that one schema is exactly what production's staging schema
must hold. Both are removed when the copy is done, or by the DAG's teardown.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hms_dr import sqlfiles
from hms_dr.database import connect
from hms_dr.dr.request import IDENTIFIER, TableName
from hms_dr.errors import ParamInvalid
from hms_dr.pgtools import ConnectionInfo

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "hms_dr_scratch_"


def scratch_database_name(key: str) -> str:
    """A scratch database per run, e.g. hms_dr_scratch_manual__2026_11_24t14_05_a1b2c3 (at most 63)."""
    name = f"{SCRATCH_PREFIX}{key[:36]}_{secrets.token_hex(3)}"
    assert IDENTIFIER.fullmatch(name), name
    return name


def drop_scratch_database(admin: ConnectionInfo, name: str) -> bool:
    """Drop a DR scratch database (only ever one named like one); True when it existed."""
    from psycopg import sql

    if not name.startswith(SCRATCH_PREFIX) or not IDENTIFIER.fullmatch(name):
        raise ParamInvalid(f"refusing to drop {name!r}: not a DR scratch database ({SCRATCH_PREFIX}*)")
    with connect(admin) as connection:
        existed = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if existed:
        log.info("dropped scratch database %s on %s:%s", name, admin.host, admin.port)
    return existed


@dataclass(frozen=True)
class ScratchCluster:
    """Where a scratch cluster recovered to a point in time lives on this worker."""

    home: Path  # everything of it is under here, and goes with it

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "sockets"

    @property
    def log_file(self) -> Path:
        return self.home / "log" / "server.log"

    def to_dict(self) -> dict[str, str]:
        return {"home": str(self.home)}


def scratch_cluster_home(staging_dir: Path, key: str) -> ScratchCluster:
    """A short path (the socket directory must stay under 90 characters)."""
    import hashlib

    return ScratchCluster(staging_dir / "dr-restore" / hashlib.sha256(key.encode()).hexdigest()[:10])


def remove_scratch_cluster(cluster: ScratchCluster, *, port: int | None = None, superuser: str = "postgres") -> bool:
    """Stop the scratch cluster if it runs and remove everything under its home; True when there
    was something to remove. Never touches a directory outside ``.../dr-restore/``."""
    from hms_dr.physical.server import RecoveringServer

    if cluster.home.parent.name != "dr-restore":
        raise ParamInvalid(f"refusing to remove {cluster.home}: not a DR scratch cluster directory")
    if not cluster.home.exists():
        return False
    if (cluster.data_dir / "postmaster.pid").exists():
        RecoveringServer(cluster.data_dir, port or 0, cluster.socket_dir, cluster.log_file, superuser).stop("fast")
    shutil.rmtree(cluster.home, ignore_errors=True)
    log.info("removed scratch cluster %s", cluster.home)
    return True


def stage_tables_in_source(source: ConnectionInfo, tables: Sequence[TableName], schema: str) -> dict[str, Any]:
    """In the (disposable) source database: move ``tables`` into a new ``schema`` and drop their
    foreign keys. Returns what was dropped. Sequences owned by a table, its indexes, constraints
    and triggers move with it."""
    from psycopg import sql

    dropped: list[str] = []
    with connect(source, autocommit=False) as connection, connection.transaction():
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in tables:
            connection.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(sql.Identifier(table.schema, table.name), sql.Identifier(schema)))
        rows = connection.execute(sqlfiles.text("dr/foreign_keys_of_schema"), {"schema": schema}).fetchall()
        for table_name, constraint in rows:
            connection.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(schema, table_name), sql.Identifier(constraint)))
            dropped.append(f"{table_name}.{constraint}")
    log.info("source %s: %d table(s) moved into schema %s, %d foreign key(s) left to the swap",
             source.describe(), len(tables), schema, len(dropped))
    return {"foreign_keys_left_out": dropped}


def keep_only_tables(source: ConnectionInfo, keep: Sequence[TableName], every_table: Sequence[TableName]) -> list[str]:
    """In the (disposable) source database: drop every table not in ``keep`` (CASCADE: with the
    views and foreign keys that need them), so a dump of the database holds only those tables."""
    from psycopg import sql

    drop = sorted(set(every_table) - set(keep))
    if not drop:
        return []
    with connect(source, autocommit=False) as connection, connection.transaction():
        connection.execute(
            sql.SQL("DROP TABLE {} CASCADE").format(sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in drop))
        )
    log.info("source %s: %d table(s) not asked for left out", source.describe(), len(drop))
    return [t.qualified for t in drop]


def list_tables(conn: ConnectionInfo) -> list[TableName]:
    """Every user table of a database (qualified), as a logical backup would carry."""
    with connect(conn) as connection:
        rows = connection.execute(sqlfiles.text("tables_in_scope"), {"schemas": []}).fetchall()
    return [TableName(row[0], row[1]) for row in rows]


def free_port_in(first: int, last: int) -> int:
    """The first port of ``first..last`` on 127.0.0.1 that nothing listens on and that binds."""
    import socket

    from hms_dr.errors import PreflightFailed
    from hms_dr.server_user import port_is_open

    for port in range(first, last + 1):
        if port_is_open(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise PreflightFailed(f"no free port in {first}..{last} on 127.0.0.1 for the scratch cluster", hint="widen dr.pitr_port_range")
