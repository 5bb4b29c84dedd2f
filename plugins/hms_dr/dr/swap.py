"""The swap: restored tables replace production's in ONE transaction, and nothing is dropped.

For each table the current production table moves into the run's quarantine schema and the
restored one (in the staging schema) moves in under the same name. A table keeps its oid when it
changes schema, and PostgreSQL ties foreign keys, views and grants to oids, so moving alone
would leave the other tables' foreign keys and the views pointing at the quarantined table. The
plan is therefore read from production's catalog (nothing is hard-coded for the HMS schema):

1. ``CREATE SCHEMA <quarantine>``;
2. drop the foreign keys of other tables that reference the table (their definitions are kept);
3. ``ALTER TABLE <table> SET SCHEMA <quarantine>`` (with its indexes and owned sequences), then
   ``ALTER TABLE <staging>.<table> SET SCHEMA <schema>``;
4. the old table's owner and grants (table, columns, owned sequences) onto the restored one;
5. each owned sequence set to at least the old sequence's last value and the column's maximum,
   so no id production ever handed out is given again;
6. the table's own foreign keys, then the other tables' ones, recreated from the old
   definitions, each validated against the restored rows;
7. every view that read the table ``CREATE OR REPLACE``d from its own definition (same oid,
   grants and dependants), now reading the restored table.

Decide, then act: ``read_swap_tables`` reads the catalog, ``swap_plan.plan_swap`` (pure) turns it
into statements, refusals and warnings; ``preview_swap`` runs both read-only for the approval, and
``execute_swap`` runs them again under ACCESS EXCLUSIVE locks and refuses if the plan differs from
the one that was approved (its digest). Anything the swap cannot carry over — a materialized
view, a row-security policy of another table, partitions, a publication, different columns — is
a refusal that names it; the swap is then not made. The staging schema, empty after the swap, is
dropped (RESTRICT: if anything is left in it, it stays).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hms_dr import sqlfiles
from hms_dr.database import connect, first_line
from hms_dr.dr.request import TableName
from hms_dr.dr.swap_plan import (
    DependentView,
    ForeignKey,
    Grant,
    OwnedSequence,
    SwapPlan,
    SwapTable,
    TableSide,
    grant_key,
    grant_keys,
    plan_swap,
    refusals_of,
)
from hms_dr.errors import DatabaseBusy, SwapRefused
from hms_dr.pgtools import ConnectionInfo

log = logging.getLogger(__name__)

__all__ = ["execute_swap", "grant_keys", "preview_swap", "production_refusals", "read_side", "read_swap_tables"]


# -- reading the catalog -----------------------------------------------------------------------


def read_side(cursor: Any, table: TableName) -> TableSide | None:
    """A table as the catalog describes it, or None when it does not exist."""
    row = cursor.execute(sqlfiles.text("dr/swap_relation"), {"schema": table.schema, "name": table.name}).fetchone()
    if row is None:
        return None
    oid, relkind, owner, partitioned, publications = row
    params = {"oid": oid}
    columns = tuple(
        (str(r[0]), str(r[1]), bool(r[2])) for r in cursor.execute(sqlfiles.text("dr/table_columns"), params).fetchall()
    )
    grants = _grants(cursor, oid)
    sequences = tuple(
        OwnedSequence(str(column), TableName(str(schema), str(name)), _grants(cursor, seq_oid))
        for column, schema, name, seq_oid in cursor.execute(sqlfiles.text("dr/owned_sequences"), params).fetchall()
    )
    fks = tuple(
        ForeignKey(table, str(name), str(definition))
        for name, definition in cursor.execute(sqlfiles.text("dr/foreign_keys_of_table"), params).fetchall()
    )
    parts = tuple(
        (str(kind), str(name)) for kind, name in cursor.execute(sqlfiles.text("dr/table_parts"), params).fetchall()
    )
    return TableSide(
        table,
        int(oid),
        str(relkind),
        str(owner),
        bool(partitioned),
        tuple(publications or ()),
        columns,
        grants,
        sequences,
        fks,
        parts,
    )


def _grants(cursor: Any, oid: int) -> tuple[Grant, ...]:
    rows = cursor.execute(sqlfiles.text("dr/table_grants"), {"oid": oid}).fetchall()
    return tuple(
        Grant(str(grantee), str(privilege), bool(grantable), column) for grantee, privilege, grantable, column in rows
    )


def read_swap_tables(cursor: Any, pairs: Sequence[tuple[TableName, TableName]]) -> list[SwapTable]:
    """Each (production, restored) pair with what depends on the production table; SwapRefused
    when either table does not exist. Run with search_path = pg_catalog (see ``_catalog_settings``)."""
    sides: list[tuple[TableSide, TableSide]] = []
    for production_name, restored_name in pairs:
        production = read_side(cursor, production_name)
        restored = read_side(cursor, restored_name)
        if production is None:
            raise SwapRefused(f"{production_name.qualified} does not exist in production: nothing to swap")
        if restored is None:
            raise SwapRefused(f"the restored {restored_name.qualified} does not exist (already swapped, or removed)")
        sides.append((production, restored))
    swapped = [production.oid for production, _ in sides]
    out = []
    for production, restored in sides:
        params = {"oid": production.oid, "swapped": swapped}
        referencing = tuple(
            ForeignKey(TableName(str(schema), str(table)), str(name), str(definition))
            for schema, table, name, definition in cursor.execute(
                sqlfiles.text("dr/foreign_keys_referencing"), params
            ).fetchall()
        )
        views = tuple(
            DependentView(TableName(str(schema), str(name)), str(kind), str(definition), tuple(options or ()))
            for schema, name, kind, definition, options in cursor.execute(
                sqlfiles.text("dr/dependent_views"), params
            ).fetchall()
        )
        unhandled = tuple(
            str(r[0]) for r in cursor.execute(sqlfiles.text("dr/unhandled_dependents"), params).fetchall()
        )
        out.append(SwapTable(production, restored, referencing, views, unhandled))
    return out


def _catalog_settings(cursor: Any, lock_timeout_s: int | None = None) -> None:
    # Definitions read and statements run with only pg_catalog on the path: every name in them is
    # schema-qualified, so "public.appointments" is resolved by name when the statement runs.
    cursor.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
    if lock_timeout_s is not None:
        cursor.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (f"{lock_timeout_s}s",))


def restored_pairs(tables: Sequence[TableName], staging_schema: str) -> list[tuple[TableName, TableName]]:
    return [(table, TableName(staging_schema, table.name)) for table in tables]


def preview_swap(
    admin: ConnectionInfo, tables: Sequence[TableName], *, staging_schema: str, quarantine_schema: str
) -> SwapPlan:
    """The swap's plan, read without locks in a read-only transaction: what the approver sees."""
    with connect(admin, autocommit=False) as connection, connection.transaction(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION READ ONLY")
        _catalog_settings(cursor)
        swap_tables = read_swap_tables(cursor, restored_pairs(tables, staging_schema))
    return plan_swap(swap_tables, quarantine_schema=quarantine_schema, staging_schema=staging_schema)


def execute_swap(
    admin: ConnectionInfo,
    tables: Sequence[TableName],
    *,
    staging_schema: str,
    quarantine_schema: str,
    approved_digest: str | None,
    lock_timeout_s: int,
) -> dict[str, Any]:
    """Lock, re-read, re-plan, refuse if the plan is not the approved one, then run it and
    check the result, all in one transaction. Returns what was done (plain data)."""
    import psycopg

    started = time.monotonic()
    pairs = restored_pairs(tables, staging_schema)
    try:
        with connect(admin, autocommit=False) as connection:
            with connection.transaction(), connection.cursor() as cursor:
                _catalog_settings(cursor, lock_timeout_s)
                # One LOCK of every table the swap alters, in a fixed order (the tables that
                # reference them are learnt from the catalog first, which takes no lock); what
                # changed in between, the digest below refuses.
                referencing = {fk.table for t in read_swap_tables(cursor, pairs) for fk in t.referencing}
                _lock(cursor, [name for pair in pairs for name in pair] + sorted(referencing))
                swap_tables = read_swap_tables(cursor, pairs)
                plan = plan_swap(swap_tables, quarantine_schema=quarantine_schema, staging_schema=staging_schema)
                if plan.refusals:
                    raise SwapRefused(f"swap not made: {'; '.join(plan.refusals)}")
                if approved_digest is not None and plan.digest != approved_digest:
                    raise SwapRefused(
                        "swap not made: production's tables or their dependants changed since the swap was shown for approval",
                        hint="trigger the run again: the new approval will show the swap as it is now",
                    )
                missing = {fk.table for t in swap_tables for fk in t.referencing} - referencing
                if missing:
                    raise SwapRefused(
                        f"swap not made: {', '.join(t.qualified for t in sorted(missing))} began referencing the tables meanwhile"
                    )
                rows_before = {t.production.table.qualified: _count(cursor, t.production.table) for t in swap_tables}
                rows_restored = {t.production.table.qualified: _count(cursor, t.restored.table) for t in swap_tables}
                for statement in plan.statements:
                    log.info("swap: %s", statement.purpose)
                    try:
                        cursor.execute(statement.sql)
                    except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                        raise
                    except psycopg.Error as exc:
                        raise SwapRefused(
                            f"swap not made, production unchanged: {statement.purpose} failed: {first_line(exc)}"
                        ) from None
                _check_in_transaction(cursor, swap_tables, rows_restored, quarantine_schema)
                staging_dropped = _drop_if_empty(connection, cursor, staging_schema)
    except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
        raise DatabaseBusy(
            f"swap not made, production unchanged: the tables' locks were not granted within {lock_timeout_s} s ({first_line(exc)})",
            hint="the tables are in use; the task retries, or stop the application's writes first (runbook step 1)",
        ) from None
    except psycopg.Error as exc:
        raise SwapRefused(f"swap not made, production unchanged: {first_line(exc)}") from None
    seconds = time.monotonic() - started
    log.info(
        "swap committed in %.1f s: %d table(s) replaced, the old ones kept in schema %s",
        seconds,
        len(plan.tables),
        quarantine_schema,
    )
    return {
        "quarantine_schema": quarantine_schema,
        "staging_schema": staging_schema,
        "digest": plan.digest,
        "seconds": round(seconds, 3),
        "statements": len(plan.statements),
        "staging_schema_dropped": staging_dropped,
        "warnings": list(plan.warnings),
        "tables": [
            {
                "table": t.production.table.qualified,
                "quarantined_as": f"{quarantine_schema}.{t.production.table.name}",
                "production_oid_before": t.production.oid,
                "restored_oid": t.restored.oid,
                "rows_before": rows_before[t.production.table.qualified],
                "rows_restored": rows_restored[t.production.table.qualified],
                "owner": t.production.owner,
                "grants": sorted(grant_key(g) for g in t.production.grants),
                "sequences": [
                    {
                        "column": s.column,
                        "sequence": f"{t.production.table.schema}.{r.sequence.name}",
                        "grants": sorted(grant_key(g) for g in s.grants),
                    }
                    for s in t.production.sequences
                    for r in t.restored.sequences
                    if r.column == s.column
                ],
                "foreign_keys": [fk.name for fk in t.production.foreign_keys],
                "referencing_foreign_keys": [[fk.table.qualified, fk.name] for fk in t.referencing],
                "views": [v.view.qualified for v in t.views],
            }
            for t in swap_tables
        ],
    }


def _drop_if_empty(connection: Any, cursor: Any, schema: str) -> bool:
    """Drop the staging schema if the swap left it empty (RESTRICT, in a savepoint): an empty
    schema holds nothing; one that still holds anything is kept."""
    import psycopg
    from psycopg import sql

    try:
        with connection.transaction():
            cursor.execute(sql.SQL("DROP SCHEMA {} RESTRICT").format(sql.Identifier(schema)))
    except psycopg.errors.DependentObjectsStillExist:
        log.info("staging schema %s still holds objects: kept", schema)
        return False
    return True


def _lock(cursor: Any, tables: Sequence[TableName]) -> None:
    from psycopg import sql

    if tables:
        # One statement, names in a fixed order: two swaps (or a swap and DDL) cannot deadlock on the order.
        ordered = sorted(set(tables))
        cursor.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in ordered)
            )
        )


def _count(cursor: Any, table: TableName) -> int:
    from psycopg import sql

    return int(
        cursor.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(table.schema, table.name))
        ).fetchone()[0]
    )


def _check_in_transaction(
    cursor: Any, swap_tables: Sequence[SwapTable], rows_restored: Mapping[str, int], quarantine_schema: str
) -> None:
    """Before COMMIT: each name now reaches the restored table with its rows, and every foreign
    key that referenced the old table references the new one, validated."""
    problems = []
    for t in swap_tables:
        name = t.production.table
        row = cursor.execute(sqlfiles.text("dr/swap_relation"), {"schema": name.schema, "name": name.name}).fetchone()
        if row is None or int(row[0]) != t.restored.oid:
            problems.append(f"{name.qualified} is not the restored table after the swap")
            continue
        if _count(cursor, name) != rows_restored[name.qualified]:
            problems.append(f"{name.qualified} does not hold the restored rows after the swap")
        old = cursor.execute(
            sqlfiles.text("dr/swap_relation"), {"schema": quarantine_schema, "name": name.name}
        ).fetchone()
        if old is None or int(old[0]) != t.production.oid:
            problems.append(f"{quarantine_schema}.{name.name} is not the former production table")
        referencing = cursor.execute(
            sqlfiles.text("dr/foreign_keys_referencing"), {"oid": t.restored.oid, "swapped": []}
        ).fetchall()
        found = {(str(r[0]), str(r[1]), str(r[2])) for r in referencing}
        for fk in t.referencing:
            if (fk.table.schema, fk.table.name, fk.name) not in found:
                problems.append(
                    f"foreign key {fk.name} of {fk.table.qualified} does not reference the restored {name.qualified}"
                )
    if problems:
        raise SwapRefused(f"swap not made, production unchanged: {'; '.join(problems)}")


def production_refusals(admin: ConnectionInfo, tables: Sequence[TableName]) -> list[str]:
    """What would make a swap of ``tables`` impossible whatever is restored (a materialized view,
    another table's row-security policy, partitions, a publication): checked before restoring."""
    refusals: list[str] = []
    with connect(admin, autocommit=False) as connection:
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            _catalog_settings(cursor)
            sides = [side for side in (read_side(cursor, t) for t in tables) if side is not None]
            swapped = [side.oid for side in sides]
            for side in sides:
                params = {"oid": side.oid, "swapped": swapped}
                views = tuple(
                    DependentView(TableName(str(r[0]), str(r[1])), str(r[2]), str(r[3]), tuple(r[4] or ()))
                    for r in cursor.execute(sqlfiles.text("dr/dependent_views"), params).fetchall()
                )
                unhandled = tuple(
                    str(r[0]) for r in cursor.execute(sqlfiles.text("dr/unhandled_dependents"), params).fetchall()
                )
                pair = SwapTable(side, side, views=views, unhandled=unhandled)
                refusals.extend(
                    refusals_of(pair, side.table.schema)
                )  # the table paired with itself: only its own and its dependants' problems
    return list(dict.fromkeys(refusals))
