"""Baselines: what a restored database must contain, recorded in the snapshot that was dumped.

For every table: its columns and exact row count. For every view the policy names: its row
count and an order-independent fingerprint of its rows. They are computed inside the same
REPEATABLE READ transaction whose exported snapshot pg_dump uses, so under live writes the
restore must still match them exactly. The restore test computes the same figures with the
same queries and session settings and compares.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hms_dr import sqlfiles
from hms_dr.errors import PreflightFailed
from hms_dr.names import RelationName, check_schema_name, parse_relation_name, relation_key, split_relation_key

log = logging.getLogger(__name__)

FINGERPRINT_METHOD = "md5-row-text-sum64x2-v1"

# row::text depends on these settings; fixing them makes the fingerprint of the same rows the
# same on the production server and on any restore target, whatever their configuration.
FINGERPRINT_SESSION_SETTINGS: Mapping[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "lc_monetary": "C",
}


def apply_fingerprint_settings(cursor: Any, settings: Mapping[str, str] = FINGERPRINT_SESSION_SETTINGS) -> None:
    """SET LOCAL each setting in the current transaction."""
    for name, value in settings.items():
        cursor.execute("SELECT set_config(%s, %s, true)", (name, value))


def qualified(schema: str, name: str) -> str:
    """The schema.name key of a table or view (see hms_dr.names for how it splits back)."""
    return relation_key(schema, name)


def list_tables(cursor: Any, schemas: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Tables in scope -> {"columns": [[name, type, not_null], ...], "relkind": "r"|"p",
    "primary_key": [column, ...] | None, "foreign_keys": [{"name", "columns", "references",
    "referenced_columns"}, ...]}."""
    cursor.execute(sqlfiles.text("tables_in_scope"), {"schemas": list(schemas)})
    rows = cursor.fetchall()
    for schema in sorted({row[0] for row in rows}):
        problem = check_schema_name(schema)
        if problem:
            raise PreflightFailed(problem)
    tables: dict[str, dict[str, Any]] = {
        qualified(schema, table): {"columns": columns, "relkind": relkind, "primary_key": None, "foreign_keys": []}
        for schema, table, relkind, columns in rows
    }
    cursor.execute(sqlfiles.text("table_keys"), {"schemas": list(schemas)})
    for schema, table, kind, name, columns, ref_schema, ref_table, ref_columns in cursor.fetchall():
        record = tables.get(qualified(schema, table))
        if record is None:
            continue
        if kind == "p":
            record["primary_key"] = columns
        else:
            record["foreign_keys"].append(
                {
                    "name": name,
                    "columns": columns,
                    "references": qualified(ref_schema, ref_table),
                    "referenced_columns": ref_columns,
                }
            )
    return tables


def resolve_relations(cursor: Any, names: Sequence[str], *, purpose: str) -> list[tuple[str, str]]:
    """Policy relation names, in SQL spelling (``public."Order Details"``) -> the catalog's
    (schema, name); PreflightFailed names any that is misspelt or does not exist."""
    resolved: list[tuple[str, str]] = []
    for name in names:
        try:
            spelled = parse_relation_name(name)
        except ValueError as exc:
            raise PreflightFailed(f"{purpose} in the policy: {exc}") from None
        # Quoted part by part, so to_regclass reads exactly the names parsed here.
        cursor.execute(sqlfiles.text("resolve_relation"), {"name": spelled.regclass_text()})
        row = cursor.fetchone()
        if row is None:
            raise PreflightFailed(f"{purpose} {name!r}, named in the policy, does not exist in the database")
        schema, relation, relkind = row
        if relkind not in ("v", "m", "r", "p"):
            raise PreflightFailed(f"{purpose} {name!r} is not a view or table (relkind {relkind})")
        problem = check_schema_name(schema)
        if problem:
            raise PreflightFailed(problem)
        resolved.append((schema, relation))
    return resolved


def partition_tree(cursor: Any, schema: str, table: str) -> list[tuple[str, str, bool]]:
    """The table and, when it is partitioned, every partition at every level, as (schema, name,
    is_leaf); only leaves hold rows (a plain table is its own leaf). Empty for a view."""
    cursor.execute(sqlfiles.text("partition_tree"), {"name": regclass_of(schema, table)})
    return [(s, n, bool(leaf)) for s, n, leaf in cursor.fetchall()]


def regclass_of(schema: str, name: str) -> str:
    """Text to_regclass reads as exactly this schema and name."""
    return RelationName(schema, name).regclass_text()


def count_rows(cursor: Any, schema: str, table: str) -> int:
    from psycopg import sql

    cursor.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, table)))
    return int(cursor.fetchone()[0])


def fingerprint_relation(cursor: Any, schema: str, name: str) -> dict[str, Any]:
    """{"rows": n, "fingerprint": hex} of a view or table's rows, in any order."""
    from psycopg import sql

    query = sql.SQL(sqlfiles.text("relation_fingerprint")).format(relation=sql.Identifier(schema, name))
    cursor.execute(query)
    row_count, high, low = cursor.fetchone()
    return {"rows": int(row_count), "fingerprint": fingerprint_digest(int(row_count), str(high), str(low))}


def fingerprint_digest(row_count: int, hash_sum_high: str, hash_sum_low: str) -> str:
    return hashlib.sha256(f"{FINGERPRINT_METHOD}:{row_count}:{hash_sum_high}:{hash_sum_low}".encode()).hexdigest()


def compute_baselines(cursor: Any, *, schemas: Sequence[str], views: Sequence[str]) -> dict[str, Any]:
    """Baselines of the database as the cursor's transaction sees it (call inside the snapshot)."""
    apply_fingerprint_settings(cursor)
    return measure(cursor, list_tables(cursor, schemas), resolve_relations(cursor, views, purpose="baseline view"))


def measure(
    cursor: Any, tables: dict[str, dict[str, Any]], views: Sequence[tuple[str, str]], *, count_tables: bool = True
) -> dict[str, Any]:
    """Count every listed table and fingerprint every view; the fingerprint settings must be set.

    ``count_tables=False`` leaves the row counts to the caller: the daily backup takes them from
    the content digests of the dump itself, which saves a second read of every table.
    """
    started = time.monotonic()
    if count_tables:
        for name, record in tables.items():
            schema, table = split_relation_key(name)
            record["rows"] = count_rows(cursor, schema, table)
    view_records = {qualified(schema, view): fingerprint_relation(cursor, schema, view) for schema, view in views}
    log.info(
        "baselines: %d tables%s, %d views fingerprinted, in %.1f s",
        len(tables),
        f", {sum(t['rows'] for t in tables.values()):,} rows in all" if count_tables else "",
        len(view_records),
        time.monotonic() - started,
    )
    return {
        "fingerprint_method": FINGERPRINT_METHOD,
        "session_settings": dict(FINGERPRINT_SESSION_SETTINGS),
        "tables": tables,
        "views": view_records,
    }


def summarize_baselines(baselines: Mapping[str, Any]) -> list[str]:
    """Lines a person reads in the log or the demo output: one per table and view."""
    lines = []
    for name, record in sorted(baselines.get("tables", {}).items()):
        lines.append(f"table {name}: {record['rows']:,} rows, {len(record['columns'])} columns")
    for name, record in sorted(baselines.get("views", {}).items()):
        lines.append(f"view  {name}: {record['rows']:,} rows, fingerprint {record['fingerprint'][:16]}")
    return lines


def diff_baselines(expected: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
    """Every way ``observed`` differs from ``expected``, one line each, naming the table or view."""
    differences: list[str] = []
    expected_tables, observed_tables = expected.get("tables", {}), observed.get("tables", {})
    for name, record in sorted(expected_tables.items()):
        seen = observed_tables.get(name)
        if seen is None:
            differences.append(f"table {name} is missing")
            continue
        if [c[:2] for c in seen["columns"]] != [c[:2] for c in record["columns"]]:
            differences.append(f"table {name} has columns {seen['columns']}, baseline {record['columns']}")
        if record.get("primary_key") != seen.get("primary_key"):
            differences.append(
                f"table {name} has primary key {seen.get('primary_key')}, baseline {record.get('primary_key')}"
            )
        if "rows" in record and seen.get("rows") != record["rows"]:
            differences.append(f"table {name} has {seen.get('rows')} rows, baseline {record['rows']}")
    for name in sorted(set(observed_tables) - set(expected_tables)):
        differences.append(f"table {name} is not in the baseline")
    for name, record in sorted(expected.get("views", {}).items()):
        seen = observed.get("views", {}).get(name)
        if seen is None:
            differences.append(f"view {name} is missing")
        elif seen["rows"] != record["rows"]:
            differences.append(f"view {name} has {seen['rows']} rows, baseline {record['rows']}")
        elif seen["fingerprint"] != record["fingerprint"]:
            differences.append(f"view {name} rows differ from the baseline fingerprint")
    return differences
