"""How the source a DR restore takes its tables from is readied for the copy.

For a logical backup set the source is a scratch database on the isolated restore server: the
whole set is restored there (types, functions and every table the requested ones may need), as
the restore test does. For a point in time it is a scratch cluster recovered to that point
(``physical.recovery.recover``) on a free port on this worker. Both are made and removed by
``hms_dr.scratch``. Both are disposable: the tables to restore are moved there into a schema
named like the staging schema (and their foreign keys dropped: production's own are recreated
by the swap), so that a dump of that one schema is exactly what production's staging schema
must hold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hms_dr import sqlfiles
from hms_dr.database import connect
from hms_dr.dr.request import TableName
from hms_dr.pgtools import ConnectionInfo

log = logging.getLogger(__name__)


def stage_tables_in_source(source: ConnectionInfo, tables: Sequence[TableName], schema: str) -> dict[str, Any]:
    """In the (disposable) source database: move ``tables`` into a new ``schema`` and drop their
    foreign keys. Returns what was dropped. Sequences owned by a table, its indexes, constraints
    and triggers move with it."""
    from psycopg import sql

    dropped: list[str] = []
    with connect(source, autocommit=False) as connection, connection.transaction():
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in tables:
            connection.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(table.schema, table.name), sql.Identifier(schema)
                )
            )
        rows = connection.execute(sqlfiles.text("dr/foreign_keys_of_schema"), {"schema": schema}).fetchall()
        for table_name, constraint in rows:
            connection.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(schema, table_name), sql.Identifier(constraint)
                )
            )
            dropped.append(f"{table_name}.{constraint}")
    log.info(
        "source %s: %d table(s) moved into schema %s, %d foreign key(s) left to the swap",
        source.describe(),
        len(tables),
        schema,
        len(dropped),
    )
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
