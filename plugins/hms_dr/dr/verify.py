"""Checks of a DR restore: the restored tables before the swap, production after it.

Restored from a logical set, the tables are checked with Great Expectations against the set's
baselines (``baselines_for_restored`` renames them to where they now are). Restored from a point
in time there is no baseline for that moment: ``compare_with_production`` checks the columns
against production's table, the primary key, and every foreign key of production's table
against production's rows, and reports the row counts. ``check_after_swap`` proves, after the
commit, that each name reaches the restored table, the quarantine schema holds the old one,
foreign keys and views follow the restored table, owner and grants are the old table's, and
every sequence is ahead of the ids in use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hms_dr import baseline, sqlfiles
from hms_dr.database import connect
from hms_dr.dr.request import TableName
from hms_dr.pgtools import ConnectionInfo

log = logging.getLogger(__name__)


def baselines_for_restored(
    baselines: Mapping[str, Any], tables: Sequence[TableName], *, staging_schema: str | None, whole_database: bool
) -> dict[str, Any]:
    """The set's baselines of ``tables``, named where the restored tables are: in the staging
    schema (a foreign key to another restored table then points at its staged copy, the others
    at production's table), or unchanged in a new database (whole: with the views too)."""
    records = baselines.get("tables", {})
    wanted = {t.qualified: t for t in tables}
    renamed: dict[str, Any] = {}
    for qualified, table in wanted.items():
        record = dict(records[qualified])
        if staging_schema is not None:
            fks = []
            for fk in record.get("foreign_keys", []):
                fk = dict(fk)
                if fk["references"] in wanted:
                    fk["references"] = f"{staging_schema}.{wanted[fk['references']].name}"
                fks.append(fk)
            record["foreign_keys"] = fks
            renamed[f"{staging_schema}.{table.name}"] = record
        else:
            record["foreign_keys"] = [
                fk for fk in record.get("foreign_keys", []) if whole_database or fk["references"] in wanted
            ]
            renamed[qualified] = record
    whole = whole_database and staging_schema is None
    return {
        **{k: v for k, v in baselines.items() if k not in ("tables", "views", "large_objects")},
        "tables": renamed,
        "views": dict(baselines.get("views", {})) if whole else {},
        # The large objects are restored with the whole database only.
        **({"large_objects": baselines["large_objects"]} if whole and "large_objects" in baselines else {}),
    }


def count_rows(conn: ConnectionInfo, tables: Sequence[TableName]) -> dict[str, int | None]:
    """Exact row counts (None for a table that does not exist)."""
    counts: dict[str, int | None] = {}
    with connect(conn) as connection, connection.cursor() as cursor:
        for table in tables:
            exists = cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (_regclass_text(table),)).fetchone()[0]
            counts[table.qualified] = baseline.count_rows(cursor, table.schema, table.name) if exists else None
    return counts


def _regclass_text(table: TableName) -> str:
    from psycopg import sql

    return sql.Identifier(table.schema, table.name).as_string(None)


def compare_with_production(
    production: ConnectionInfo, restored_db: ConnectionInfo, tables: Sequence[TableName], *, staging_schema: str | None
) -> dict[str, Any]:
    """Checks of restored tables that have no baseline (a point in time): one row per check."""
    from hms_dr.quality.plan import query_text, quote_ident, quote_relation

    checks: list[dict[str, Any]] = []
    with connect(production) as connection, connection.cursor() as cursor:
        production_tables = baseline.list_tables(cursor, sorted({t.schema for t in tables}))
    restored_schema = {t: (staging_schema or t.schema) for t in tables}
    with connect(restored_db) as connection, connection.cursor() as cursor:
        restored_tables = baseline.list_tables(cursor, sorted(set(restored_schema.values())))
        for table in tables:
            where = f"{restored_schema[table]}.{table.name}"
            expected = production_tables.get(table.qualified)
            seen = restored_tables.get(where)
            if seen is None:
                checks.append(_check("columns", where, "present", "missing", False))
                continue
            if expected is None:
                checks.append(_check("columns", where, "a table of production", "not in production", False))
                continue
            expected_columns = [c[:2] for c in expected["columns"]]
            seen_columns = [c[:2] for c in seen["columns"]]
            checks.append(_check("columns", where, expected_columns, seen_columns, expected_columns == seen_columns))
            if expected.get("primary_key"):
                checks.append(
                    _check(
                        "primary_key",
                        where,
                        expected["primary_key"],
                        seen.get("primary_key"),
                        expected["primary_key"] == seen.get("primary_key"),
                    )
                )
            if staging_schema is None:
                continue  # a new database: its own restored foreign keys hold (they were validated when created)
            for fk in expected.get("foreign_keys", []):
                parent = fk["references"]
                restored_parent = next((f"{staging_schema}.{t.name}" for t in tables if t.qualified == parent), parent)
                query = query_text(
                    "orphaned_foreign_key_rows",
                    child_table=quote_relation(where),
                    referenced_table=quote_relation(restored_parent),
                    child_key_not_null=" AND ".join(f"child.{quote_ident(c)} IS NOT NULL" for c in fk["columns"]),
                    key_matches=" AND ".join(
                        f"parent.{quote_ident(p)} = child.{quote_ident(c)}"
                        for c, p in zip(fk["columns"], fk["referenced_columns"], strict=False)
                    ),
                )
                orphans = int(cursor.execute(query).fetchone()[0])
                checks.append(
                    _check("foreign_key", f"{where} {fk['name']} -> {restored_parent}", 0, orphans, orphans == 0)
                )
    failed = [
        f"{c['check']} of {c['target']}: expected {c['expected']}, observed {c['observed']}"
        for c in checks
        if not c["passed"]
    ]
    return {
        "passed": not failed,
        "checks": checks,
        "failed": failed,
        "note": "no baselines exist for a point in time: columns and keys compared with production, row counts reported",
    }


def _check(kind: str, target: str, expected: Any, observed: Any, passed: bool) -> dict[str, Any]:
    return {"check": kind, "target": target, "expected": expected, "observed": observed, "passed": passed}


def check_after_swap(admin: ConnectionInfo, swapped: Mapping[str, Any]) -> dict[str, Any]:
    """After the commit: one row per check of production; a failed one is reported, not raised."""
    from psycopg import sql

    from hms_dr.dr.swap import read_side

    checks: list[dict[str, Any]] = []
    quarantine = swapped["quarantine_schema"]
    with connect(admin) as connection, connection.cursor() as cursor:
        cursor.execute("SET search_path = pg_catalog")
        for record in swapped["tables"]:
            table = TableName.parse(record["table"])
            now = read_side(cursor, table)
            old = read_side(cursor, TableName(quarantine, table.name))
            checks.append(
                _check(
                    "restored table in place",
                    table.qualified,
                    record["restored_oid"],
                    now and now.oid,
                    now is not None and now.oid == record["restored_oid"],
                )
            )
            checks.append(
                _check(
                    "replaced table quarantined",
                    f"{quarantine}.{table.name}",
                    record["production_oid_before"],
                    old and old.oid,
                    old is not None and old.oid == record["production_oid_before"],
                )
            )
            if now is None:
                continue
            rows = baseline.count_rows(cursor, table.schema, table.name)
            checks.append(
                _check(
                    "row count",
                    table.qualified,
                    f"{record['rows_restored']} restored (writes since count too)",
                    rows,
                    True,
                )
            )
            if old is not None:
                checks.append(
                    _check(
                        "quarantined rows",
                        f"{quarantine}.{table.name}",
                        record["rows_before"],
                        baseline.count_rows(cursor, quarantine, table.name),
                        True,
                    )
                )
            checks.append(_check("owner", table.qualified, record["owner"], now.owner, now.owner == record["owner"]))
            from hms_dr.dr.swap import grant_keys

            granted = grant_keys(now.grants)
            checks.append(_check("grants", table.qualified, record["grants"], granted, granted == record["grants"]))
            referencing = {
                (str(r[0]) + "." + str(r[1]), str(r[2]))
                for r in cursor.execute(
                    sqlfiles.text("dr/foreign_keys_referencing"), {"oid": now.oid, "swapped": []}
                ).fetchall()
            }
            for child, name in record["referencing_foreign_keys"]:
                validated = cursor.execute(
                    "SELECT convalidated FROM pg_constraint WHERE conname = %s AND conrelid = to_regclass(%s) AND confrelid = %s",
                    (name, _regclass_text(TableName.parse(child)), now.oid),
                ).fetchone()
                checks.append(
                    _check(
                        "foreign key follows",
                        f"{child} {name}",
                        table.qualified,
                        "restored table" if (child, name) in referencing else "elsewhere",
                        (child, name) in referencing and bool(validated and validated[0]),
                    )
                )
            own = {fk.name for fk in now.foreign_keys}
            for name in record["foreign_keys"]:
                checks.append(
                    _check(
                        "foreign key kept",
                        f"{table.qualified} {name}",
                        "present",
                        "present" if name in own else "missing",
                        name in own,
                    )
                )
            reading = {
                f"{r[0]}.{r[1]}"
                for r in cursor.execute(sqlfiles.text("dr/dependent_views"), {"oid": now.oid}).fetchall()
            }
            for view in record["views"]:
                checks.append(
                    _check(
                        "view reads the restored table",
                        view,
                        table.qualified,
                        "restored table" if view in reading else "another table",
                        view in reading,
                    )
                )
                name = TableName.parse(view)
                cursor.execute(
                    sql.SQL("EXPLAIN SELECT * FROM {}").format(sql.Identifier(name.schema, name.name))
                )  # it plans: it reads a table that exists
            for sequence in record["sequences"]:
                seq = TableName.parse(sequence["sequence"])
                row = cursor.execute(
                    sql.SQL("SELECT pg_sequence_last_value({}::regclass), (SELECT max({}) FROM {})").format(
                        sql.Literal(_regclass_text(seq)),
                        sql.Identifier(sequence["column"]),
                        sql.Identifier(table.schema, table.name),
                    )
                ).fetchone()
                last, highest = row[0], row[1]
                ahead = highest is None or (last is not None and last >= highest)
                checks.append(_check("sequence ahead of the ids", seq.qualified, f">= {highest}", last, ahead))
                seq_side = read_side(cursor, seq)
                seq_grants = grant_keys(seq_side.grants) if seq_side else []
                checks.append(
                    _check(
                        "sequence grants",
                        seq.qualified,
                        sequence["grants"],
                        seq_grants,
                        seq_grants == sequence["grants"],
                    )
                )
        for record in swapped["tables"]:
            table = TableName.parse(record["table"])
            cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table.schema, table.name)))
    failed = [
        f"{c['check']} of {c['target']}: expected {c['expected']}, observed {c['observed']}"
        for c in checks
        if not c["passed"]
    ]
    log.info("after the swap: %d checks, %d failed", len(checks), len(failed))
    return {"passed": not failed, "checks": checks, "failed": failed}
