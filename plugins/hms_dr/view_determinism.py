"""View determinism: a baseline view must return the same rows every time it reads the same data.

A view's fingerprint is compared after every restore, so a view whose rows depend on the plan
(``string_agg`` without ORDER BY, LIMIT without ORDER BY, ``row_number() OVER ()``) or on the
clock (``now()``, ``random()``) fails restore tests of an untouched backup: a false alarm. Such a
view is refused when the policy names it, for the reasons found in its rewritten query tree and
the trees of every view it reads (a catalog query: the backup's preflight pays nothing more);
``check-policy`` may also fingerprint it twice under different plans. The view's data is proven
anyway by the content digests of the tables it reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hms_dr import baseline, sqlfiles
from hms_dr.errors import PreflightFailed

log = logging.getLogger(__name__)

REFUSAL_HINT = (
    "write ORDER BY inside the aggregate (string_agg(name, ', ' ORDER BY name)) or the query, or remove the view from "
    "logical_backup.baseline_views: its data is still proven by the per-table content digests of the tables it reads"
)
# Plan settings of the second fingerprint of the dynamic check: other scans, other aggregation.
OTHER_PLAN_SETTINGS: Mapping[str, str] = {
    "enable_seqscan": "off",
    "enable_hashagg": "off",
    "enable_hashjoin": "off",
    "max_parallel_workers_per_gather": "0",
}


# -- PostgreSQL's node-tree text (nodeToString), read as nested dicts and lists ------------------


def _tokens(text: str) -> Iterator[str]:
    """pg_strtok's tokens: ( ) { } alone, anything else up to whitespace or one of them, with a
    backslash escaping the next character (kept, so an escaped ':' never reads as a field name)."""
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "(){}":
            yield char
            i += 1
        else:
            start = i
            while i < size and not text[i].isspace() and text[i] not in "(){}":
                i += 2 if text[i] == "\\" else 1
            yield text[start:i]


def parse_node_tree(text: str) -> Any:
    """A node tree as ``{"node": NAME, "field": value, ...}``; lists as lists, ``<>`` as None,
    other values as their token text (a Const's value bytes as one list)."""
    tokens = list(_tokens(text))
    position = 0

    def value() -> Any:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "{":
            node: dict[str, Any] = {"node": tokens[position]}
            position += 1
            while tokens[position] != "}":
                field = tokens[position].lstrip(":")
                position += 1
                parts = []  # one value, or several for a Const's datum: "4 [ 1 0 0 0 ... ]"
                while tokens[position] != "}" and not tokens[position].startswith(":"):
                    parts.append(value())
                node[field] = parts[0] if len(parts) == 1 else (parts or None)
            position += 1
            return node
        if token == "(":
            items = []
            while tokens[position] != ")":
                items.append(value())
            position += 1
            return items
        return None if token == "<>" else token

    trees = []
    while position < len(tokens):
        trees.append(value())
    return trees[0] if len(trees) == 1 else trees


def _nodes(tree: Any, kind: str) -> Iterator[dict[str, Any]]:
    """Every node of ``kind`` in ``tree``, depth first (nested queries included)."""
    if isinstance(tree, dict):
        if tree.get("node") == kind:
            yield tree
        for child in tree.values():
            yield from _nodes(child, kind)
    elif isinstance(tree, list):
        for child in tree:
            yield from _nodes(child, kind)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleTree:
    """One view's rewritten query as the catalog holds it (pg_rewrite.ev_action)."""

    view: str
    tree_text: str


# Where a query tree names a function it calls: node -> field holding the function's oid.
_FUNCTION_FIELDS = {
    "FUNCEXPR": "funcid",
    "OPEXPR": "opfuncid",
    "DISTINCTEXPR": "opfuncid",
    "NULLIFEXPR": "opfuncid",
    "SCALARARRAYOPEXPR": "opfuncid",
    "AGGREF": "aggfnoid",
    "WINDOWFUNC": "winfnoid",
}


def called_functions(tree: Any) -> set[int]:
    """The oids of every function a parsed query tree calls."""
    return {_oid(node.get(field)) for kind, field in _FUNCTION_FIELDS.items() for node in _nodes(tree, kind)} - {-1}


def nondeterminism_reasons(
    rules: Sequence[RuleTree], order_sensitive: Mapping[int, str], unfixed: Mapping[int, str]
) -> list[str]:
    """Why the rows of the first view in ``rules`` (the others are views it reads) are not fixed
    by the data, one phrase each; empty when none is found (a pure decision).

    :param order_sensitive: oid -> name of the aggregates and window functions an ORDER BY fixes.
    :param unfixed: oid -> signature of the functions whose value the rows do not fix (random(), now()).
    """
    reasons: list[str] = []
    for rule in rules:
        where = "" if rule is rules[0] else f" (in {rule.view}, which it reads)"
        tree = parse_node_tree(rule.tree_text)
        for oid in sorted(called_functions(tree) & set(unfixed)):
            reasons.append(f"calls {unfixed[oid]}, whose value changes from run to run{where}")
        if any(True for _ in _nodes(tree, "SQLVALUEFUNCTION")):
            reasons.append(
                f"reads CURRENT_TIMESTAMP, CURRENT_USER or the like, which differ between the backup and a restore{where}"
            )
        for query in _nodes(tree, "QUERY"):
            reasons.extend(f"{reason}{where}" for reason in _query_reasons(query, order_sensitive))
        for sample in _nodes(tree, "TABLESAMPLECLAUSE"):
            if sample.get("repeatable") is None:
                reasons.append(f"samples a table with TABLESAMPLE and no REPEATABLE seed{where}")
    return list(dict.fromkeys(reasons))


def _query_reasons(query: Mapping[str, Any], order_sensitive: Mapping[int, str]) -> Iterator[str]:
    sort = _listed(query.get("sortClause"))
    if (query.get("limitCount") is not None or query.get("limitOffset") is not None) and not sort:
        yield "has LIMIT or OFFSET without ORDER BY, so which rows it keeps depends on the plan"
    if query.get("hasDistinctOn") == "true" and len(sort) <= len(_listed(query.get("distinctClause"))):
        yield "has DISTINCT ON without an ORDER BY beyond its DISTINCT ON expressions, so which row it keeps depends on the plan"
    for aggregate in _own_nodes(query, "AGGREF"):
        name = order_sensitive.get(_oid(aggregate.get("aggfnoid")))
        if name and not _listed(aggregate.get("aggorder")) and not _listed(aggregate.get("aggdistinct")):
            yield f"aggregates with {name}() without ORDER BY inside it, so its result depends on the order rows arrive in"
    windows = {w.get("winref"): w for w in _listed(query.get("windowClause")) if isinstance(w, dict)}
    for function in _own_nodes(query, "WINDOWFUNC"):
        name = order_sensitive.get(_oid(function.get("winfnoid")))
        window = windows.get(function.get("winref")) or {}
        if name and not _listed(window.get("orderClause")):
            yield f"uses {name}() over a window without ORDER BY, so its result depends on the order rows arrive in"


def _own_nodes(query: Mapping[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    """Nodes of ``kind`` in ``query`` itself, not in the queries nested in it (checked on their own)."""

    def walk(tree: Any) -> Iterator[dict[str, Any]]:
        if isinstance(tree, dict):
            if tree.get("node") == "QUERY" and tree is not query:
                return
            if tree.get("node") == kind:
                yield tree
            for child in tree.values():
                yield from walk(child)
        elif isinstance(tree, list):
            for child in tree:
                yield from walk(child)

    yield from walk(query)


def _oid(token: Any) -> int:
    try:
        return int(str(token))
    except ValueError:
        return -1


# -- against a database ------------------------------------------------------------------------


def read_rule_trees(cursor: Any, name: str) -> list[RuleTree]:
    """The rule trees of view ``name`` and every view it reads (none for a table)."""
    cursor.execute(sqlfiles.text("view_rule_trees"), {"name": name})
    return [RuleTree(view, text) for view, text in cursor.fetchall()]


def read_order_sensitive_functions(cursor: Any) -> dict[int, str]:
    cursor.execute(sqlfiles.text("order_sensitive_functions"))
    return {int(oid): str(name) for oid, name, _ in cursor.fetchall()}


def read_unfixed_functions(cursor: Any, oids: set[int]) -> dict[int, str]:
    if not oids:
        return {}
    cursor.execute(sqlfiles.text("unfixed_functions"), {"oids": sorted(oids)})
    return {int(oid): str(name) for oid, name in cursor.fetchall()}


def static_reasons(cursor: Any, names: Sequence[str]) -> dict[str, list[str]]:
    """Policy view name -> its nondeterminism reasons (only views that have some)."""
    order_sensitive = read_order_sensitive_functions(cursor)
    found: dict[str, list[str]] = {}
    for name in names:
        rules = read_rule_trees(cursor, name)
        called = set().union(*(called_functions(parse_node_tree(rule.tree_text)) for rule in rules)) if rules else set()
        reasons = nondeterminism_reasons(rules, order_sensitive, read_unfixed_functions(cursor, called))
        if reasons:
            found[name] = reasons
    return found


def refusal_message(name: str, reasons: Sequence[str]) -> str:
    """The one line that refuses a baseline view."""
    return (
        f"baseline view {name} does not return fixed rows: it {reasons[0]}"
        f"{f' (and {len(reasons) - 1} more reason(s))' if len(reasons) > 1 else ''}; "
        "its fingerprint would differ between restores of the same backup"
    )


def refuse_nondeterministic_views(cursor: Any, names: Sequence[str]) -> None:
    """PreflightFailed naming the first baseline view whose rows are not fixed by the data."""
    for name, reasons in static_reasons(cursor, names).items():
        raise PreflightFailed(refusal_message(name, reasons), hint=REFUSAL_HINT)


def fingerprints_under_two_plans(connection: Any, schema: str, name: str) -> tuple[str, str]:
    """The view's fingerprint twice in one REPEATABLE READ snapshot, the second time with other
    plan settings: two different digests of the same data prove the rows depend on the plan.
    Reads the view twice: for check-policy, not for the nightly backup. Rolled back."""
    with connection.transaction(force_rollback=True), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        baseline.apply_fingerprint_settings(cursor)
        first = baseline.fingerprint_relation(cursor, schema, name)["fingerprint"]
        for setting, value in OTHER_PLAN_SETTINGS.items():
            cursor.execute("SELECT set_config(%s, %s, true)", (setting, value))
        second = baseline.fingerprint_relation(cursor, schema, name)["fingerprint"]
    return first, second
