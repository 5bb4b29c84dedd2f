"""The plan of a restore check: which relations the restored database has, and every check the
baselines call for, each written as a Great Expectations expectation (class name and kwargs) on
a named data asset. Planning is pure once the survey of the restored database is taken.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hms_dr import baseline, sqlfiles
from hms_dr.names import split_relation_key

# A Great Expectations expectation that passes when its query returns no row; see gxrun.
NO_ROWS_EXPECTATION = "ExpectQueryToReturnNoRows"

CATALOG_ASSET = "restored_catalog"
# A schema name GX's table asset keeps as it is (see plan_checks).
PLAIN_SCHEMA = re.compile(r"[a-z_][a-z0-9_$]*")


class CheckKind(StrEnum):
    COLUMNS = "columns"
    ROW_COUNT = "row_count"
    PRIMARY_KEY_ENFORCED = "primary_key_enforced"
    PRIMARY_KEY_NOT_NULL = "primary_key_not_null"
    PRIMARY_KEY_UNIQUE = "primary_key_unique"
    FOREIGN_KEY = "foreign_key"
    VIEW_ROWS = "view_rows"
    SMOKE_QUERY = "smoke_query"


@dataclass(frozen=True)
class AssetSpec:
    """A GX data asset: a whole table, or the rows of a query (plain SQL; gxrun escapes it for GX)."""

    name: str
    table: tuple[str, str] | None = None
    query: str | None = None


@dataclass(frozen=True)
class ObservedRows:
    """The few rows a check compares with its baseline, when they are costly to compute (a view's
    fingerprint, a foreign key's orphan count). ``query`` (plain SQL) returns them; the check's
    query, include/sql/quality/<check_query>.sql filled with ``values`` and a source of those rows,
    returns the ones that differ from the baseline. hms-dr runs ``query`` ahead of GX and the source
    is the rows it got (see ``measure``); not measured, the source is ``query`` itself, run by GX."""

    query: str
    check_query: str
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedCheck:
    """One check of the report; ``expectation`` is None when the survey already decided it."""

    kind: CheckKind
    target: str
    expected: Any
    asset: str | None = None
    expectation: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # What a message needs beyond target and expected (a constraint name, column lists, ...).
    detail: Mapping[str, Any] = field(default_factory=dict)
    observed: ObservedRows | None = None


@dataclass(frozen=True)
class Survey:
    """What the restored database holds of the baseline's relations, before any data is read."""

    present_tables: frozenset[str]
    present_views: frozenset[str]
    view_queries: Mapping[str, str]
    parents: frozenset[str] = frozenset()  # tables with partitions or inheritance children
    enforced_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # valid primary keys


@dataclass(frozen=True)
class CheckPlan:
    assets: tuple[AssetSpec, ...]
    checks: tuple[PlannedCheck, ...]
    parameters: Mapping[str, Any]


def split_name(qualified: str) -> tuple[str, str]:
    """(schema, name) of a baseline's schema.name key (hms_dr.names: split at the first dot)."""
    return split_relation_key(qualified)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_relation(qualified: str) -> str:
    return ".".join(quote_ident(part) for part in split_name(qualified))


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def for_text_clause(sql: str) -> str:
    """SQLAlchemy's text() reads ``:word`` as a bind parameter, even inside a literal; escape it."""
    return re.sub(r"(?<!:):(?=\w)", r"\\:", sql)


def for_format(sql: str) -> str:
    """GX fills ``{batch}`` with str.format: literal braces are doubled."""
    return sql.replace("{", "{{").replace("}", "}}")


_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# GX fills {batch} itself (with the asset's table or query) when it runs an expectation's query.
_GX_PLACEHOLDERS = frozenset({"batch"})


def query_text(name: str, **values: str) -> str:
    """The query in include/sql/quality/<name>.sql, its heading comment left out (SQLAlchemy and
    GX would parse a ``:word`` or a brace in it), each ``{placeholder}`` replaced by the text given
    for it, already quoted by the caller (and, in an expectation's query, escaped for GX: see
    for_text_clause and for_format); GX's own ``{batch}`` is left for GX."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        if key in _GX_PLACEHOLDERS:
            return match.group(0)
        raise KeyError(f"include/sql/quality/{name}.sql: no value for {{{key}}}")

    return _PLACEHOLDER.sub(fill, without_heading_comment(sqlfiles.text(f"quality/{name}")))


def without_heading_comment(sql: str) -> str:
    lines = sql.splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        lines.pop(0)
    return "\n".join(lines)


def survey_database(cursor: Any, baselines: Mapping[str, Any]) -> Survey:
    """Which baseline tables and views exist in the restored database (one catalog query)."""
    from psycopg import sql

    tables = list(baselines.get("tables", {}))
    views = list(baselines.get("views", {}))
    names = tables + views
    cursor.execute(query_text("restored_relations"), {"names": names})
    found = cursor.fetchall()
    present = {name for name, exists, _ in found if exists}
    parents = frozenset(name for name, _, has_children in found if has_children)
    view_queries = {}
    for name in views:
        schema, view = split_name(name)
        # Without its heading comment, the query the Data Docs show reads as the query it is.
        composed = sql.SQL(without_heading_comment(sqlfiles.text("relation_fingerprint"))).format(
            relation=sql.Identifier(schema, view)
        )
        view_queries[name] = composed.as_string(cursor.connection)
    cursor.execute(sqlfiles.text("quality/enforced_primary_keys"), {"names": tables})
    enforced = {name: tuple(columns) for name, columns in cursor.fetchall()}
    return Survey(
        frozenset(t for t in tables if t in present),
        frozenset(v for v in views if v in present),
        view_queries,
        parents,
        enforced,
    )


def plan_checks(baselines: Mapping[str, Any], survey: Survey, smoke_queries: Sequence[tuple[str, str]]) -> CheckPlan:
    """Every check the baselines call for, in report order: tables, views, smoke queries."""
    tables: Mapping[str, Mapping[str, Any]] = baselines.get("tables", {})
    assets: list[AssetSpec] = []
    checks: list[PlannedCheck] = []
    parameters: dict[str, Any] = {}
    if tables:
        assets.append(AssetSpec(CATALOG_ASSET, query=_catalog_query(tables)))
    for name, record in sorted(tables.items()):
        checks.append(_columns_check(name, record))
        if name not in survey.present_tables:
            checks.append(PlannedCheck(CheckKind.ROW_COUNT, name, record.get("rows"), detail={"missing": True}))
            continue
        asset = name
        # A query asset where a table asset would be wrong. ONLY, as baseline.count_rows counts: a
        # partitioned table's rows are its partitions', and an inheritance parent's are not its
        # children's; each is a baseline table of its own. And GX folds a table asset's schema
        # name to lower case (or keeps the quotes around a quoted one in the name). (Not for every
        # table: GX reads a query asset's whole result to learn its columns.)
        if name in survey.parents or not PLAIN_SCHEMA.fullmatch(split_name(name)[0]):
            assets.append(AssetSpec(asset, query=query_text("own_rows_of_parent_table", relation=quote_relation(name))))
        else:
            assets.append(AssetSpec(asset, table=split_name(name)))
        parameter = re.sub(r"\W+", "_", f"rows of {name}")  # GX parameters are identifiers
        parameters[parameter] = record.get("rows")
        checks.append(
            PlannedCheck(
                CheckKind.ROW_COUNT,
                name,
                record.get("rows"),
                asset,
                "ExpectTableRowCountToEqual",
                {"value": {"$PARAMETER": parameter}},
            )
        )
        checks.extend(_primary_key_checks(name, record, asset, survey.enforced_keys.get(name)))
        checks.extend(_foreign_key_check(name, fk, asset) for fk in record.get("foreign_keys", []))
    for name, record in sorted(baselines.get("views", {}).items()):
        checks.append(_view_check(name, record, baselines, survey, assets))
    for number, (label, query) in enumerate(smoke_queries, start=1):
        asset = f"smoke_query_{number}"
        assets.append(AssetSpec(asset, query=query.strip().rstrip(";")))
        checks.append(
            PlannedCheck(
                CheckKind.SMOKE_QUERY,
                label,
                "runs",
                asset,
                "ExpectTableRowCountToBeBetween",
                {"min_value": 0},
                {"sql": query},
            )
        )
    return CheckPlan(tuple(assets), tuple(checks), parameters)


def _catalog_query(tables: Mapping[str, Any]) -> str:
    schemas = sorted({split_name(name)[0] for name in tables})
    return query_text("restored_columns", schemas=", ".join(quote_literal(s) for s in schemas))


def _columns_check(name: str, record: Mapping[str, Any]) -> PlannedCheck:
    expected = [[column[0], column[1]] for column in record["columns"]]
    expected_json = json.dumps(expected, ensure_ascii=False)
    query = query_text(
        "columns_differing_from_baseline",
        relation_name=_safe_literal(name),
        baseline_columns=_safe_literal(expected_json),
    )
    return PlannedCheck(
        CheckKind.COLUMNS,
        name,
        expected,
        CATALOG_ASSET,
        NO_ROWS_EXPECTATION,
        {"unexpected_rows_query": query, "description": f"table {name} has its baseline columns"},
    )


def _primary_key_checks(
    name: str, record: Mapping[str, Any], asset: str, enforced: tuple[str, ...] | None
) -> list[PlannedCheck]:
    """A key PostgreSQL enforces (a valid primary-key index on the
    baseline's columns) is proven from the catalog at no cost; only a key it does not enforce is
    scanned for NULLs and duplicates, so the report also says what the rows look like."""
    checks: list[PlannedCheck] = []
    key: Sequence[str] | None = record.get("primary_key")
    if key:
        key_text = f"({', '.join(key)})"
        key_literal = _safe_literal("{" + ",".join('"' + c.replace('"', '\\"') + '"' for c in key) + "}")
        schema, table = split_name(name)
        query = query_text(
            "primary_key_not_enforced",
            schema_literal=_safe_literal(schema),
            table_literal=_safe_literal(table),
            key_literal=key_literal,
        )
        checks.append(
            PlannedCheck(
                CheckKind.PRIMARY_KEY_ENFORCED,
                f"{name} {key_text}",
                "enforced",
                asset,
                NO_ROWS_EXPECTATION,
                {"unexpected_rows_query": query, "description": f"primary key {key_text} of {name} is enforced"},
                {"table": name, "key": key_text},
            )
        )
    if key and tuple(key) != enforced:
        for column in key:
            checks.append(
                PlannedCheck(
                    CheckKind.PRIMARY_KEY_NOT_NULL,
                    f"{name} ({column})",
                    0,
                    asset,
                    "ExpectColumnValuesToNotBeNull",
                    {"column": column},
                    {"table": name, "key": key_text},
                )
            )
        unique: tuple[str, dict[str, Any]] = (
            ("ExpectColumnValuesToBeUnique", {"column": key[0]})
            if len(key) == 1
            else ("ExpectCompoundColumnsToBeUnique", {"column_list": list(key)})
        )
        checks.append(
            PlannedCheck(
                CheckKind.PRIMARY_KEY_UNIQUE,
                f"{name} {key_text}",
                0,
                asset,
                *unique,
                detail={"table": name, "key": key_text},
            )
        )
    return checks


def _foreign_key_check(name: str, fk: Mapping[str, Any], asset: str) -> PlannedCheck:
    columns, referenced = list(fk["columns"]), list(fk["referenced_columns"])
    # MATCH SIMPLE, as PostgreSQL checks it: a row with any NULL key column references nothing.
    not_null = " AND ".join(f"child.{quote_ident(c)} IS NOT NULL" for c in columns)
    match = " AND ".join(
        f"parent.{quote_ident(p)} = child.{quote_ident(c)}" for c, p in zip(columns, referenced, strict=False)
    )
    observed = ObservedRows(
        query_text(
            "orphaned_foreign_key_rows",
            child_table=quote_relation(name),
            key_matches=match,
            child_key_not_null=not_null,
            referenced_table=quote_relation(fk["references"]),
        ),
        "foreign_key_broken",
    )
    detail = {
        "table": name,
        "constraint": fk["name"],
        "columns": columns,
        "references": fk["references"],
        "referenced_columns": referenced,
    }
    return PlannedCheck(
        CheckKind.FOREIGN_KEY,
        f"{name} {fk['name']}",
        0,
        asset,
        NO_ROWS_EXPECTATION,
        {
            "unexpected_rows_query": unexpected_rows_query(observed),
            "description": f"foreign key {fk['name']} of {name} holds",
        },
        detail,
        observed,
    )


def _view_check(
    name: str, record: Mapping[str, Any], baselines: Mapping[str, Any], survey: Survey, assets: list[AssetSpec]
) -> PlannedCheck:
    expected = {"rows": record["rows"], "fingerprint": record["fingerprint"]}
    method = baselines.get("fingerprint_method", baseline.FINGERPRINT_METHOD)
    if method != baseline.FINGERPRINT_METHOD:
        return PlannedCheck(CheckKind.VIEW_ROWS, name, expected, detail={"unknown_method": method})
    if name not in survey.present_views:
        return PlannedCheck(CheckKind.VIEW_ROWS, name, expected, detail={"missing": True})
    # The digest baseline.fingerprint_digest computes in Python, here in SQL, over the very query
    # baseline.fingerprint_relation runs: equal rows give a byte-for-byte equal fingerprint.
    fingerprint = query_text(
        "view_fingerprint",
        method_prefix=quote_literal(baseline.FINGERPRINT_METHOD + ":"),
        measured=survey.view_queries[name],
    )
    # The asset is the fingerprint query, so the Data Docs show what was measured; GX reads its
    # rows through the check's query (see ObservedRows), never twice. Its name is not the
    # relation's: a table may be fingerprinted too, and its own asset has that name.
    asset = unique_asset_name(f"view {name}", assets)
    assets.append(AssetSpec(asset, query=fingerprint))
    observed = ObservedRows(
        fingerprint,
        "view_differing_from_baseline",
        {
            "baseline_rows": str(int(record["rows"])),
            "baseline_fingerprint": _safe_literal(str(record["fingerprint"])),
        },
    )
    return PlannedCheck(
        CheckKind.VIEW_ROWS,
        name,
        expected,
        asset,
        NO_ROWS_EXPECTATION,
        {
            "unexpected_rows_query": unexpected_rows_query(observed),
            "description": f"view {name} gives its baseline rows",
        },
        observed=observed,
    )


def unique_asset_name(wanted: str, assets: Sequence[AssetSpec]) -> str:
    """``wanted``, or with a number added when an asset already has that name (GX refuses a
    second asset of one name; relation names may be anything, so a clash cannot be ruled out)."""
    taken = {a.name for a in assets}
    name, number = wanted, 1
    while name in taken:
        number += 1
        name = f"{wanted} ({number})"
    return name


def unexpected_rows_query(observed: ObservedRows, source: str | None = None) -> str:
    """The check's query for GX over a source of the observed rows: a parenthesized query in plain
    SQL (by default the observed query itself, which GX then runs)."""
    return query_text(
        observed.check_query, observed=for_format(for_text_clause(source or f"({observed.query})")), **observed.values
    )


def _safe_literal(text: str) -> str:
    return for_format(for_text_clause(quote_literal(text)))
