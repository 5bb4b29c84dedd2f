"""The check plan: which asset and which GX query decides each check, from plain baselines and a
survey, without PostgreSQL or Great Expectations."""

from __future__ import annotations

from typing import Any

import pytest

from hms_dr.quality.plan import CheckKind, ObservedRows, PlannedCheck, Survey, plan_checks, unexpected_rows_query

FINGERPRINT_QUERY = "SELECT count(*) AS row_count, '0' AS hash_sum_high, '0' AS hash_sum_low FROM \"public\".\"v\" AS r"


def baselines(**table_overrides: Any) -> dict[str, Any]:
    child = {
        "columns": [["id", "bigint", True], ["parent_id", "bigint", False]],
        "rows": 10,
        "primary_key": ["id"],
        "foreign_keys": [
            {
                "name": "child_parent_id_fkey",
                "columns": ["parent_id"],
                "references": "public.parent",
                "referenced_columns": ["id"],
            }
        ],
        **table_overrides,
    }
    parent = {"columns": [["id", "bigint", True]], "rows": 3, "primary_key": ["id"], "foreign_keys": []}
    return {
        "tables": {"public.child": child, "public.parent": parent},
        "views": {"public.v": {"rows": 7, "fingerprint": "ab" * 32}},
    }


def survey(parents: frozenset[str] = frozenset()) -> Survey:
    return Survey(
        frozenset({"public.child", "public.parent"}),
        frozenset({"public.v"}),
        {"public.v": FINGERPRINT_QUERY},
        parents,
        {"public.child": ("id",), "public.parent": ("id",)},
    )


def checks_of(
    kind: CheckKind, plan_baselines: dict[str, Any] | None = None, plan_survey: Survey | None = None
) -> list[PlannedCheck]:
    plan = plan_checks(plan_baselines or baselines(), plan_survey or survey(), ())
    return [check for check in plan.checks if check.kind is kind]


def test_a_foreign_key_is_checked_on_its_tables_asset_from_the_orphan_count_of_the_tables_own_rows() -> None:
    [check] = checks_of(CheckKind.FOREIGN_KEY)

    assert check.asset == "public.child" and check.target == "public.child child_parent_id_fkey"
    assert check.observed is not None
    query = check.observed.query
    assert 'FROM ONLY "public"."child" AS child' in query and 'FROM "public"."parent" AS parent' in query
    assert 'child."parent_id" IS NOT NULL' in query and 'parent."id" = child."parent_id"' in query
    assert "{" not in query  # plain SQL, runnable as it is


def test_unmeasured_checks_let_great_expectations_run_the_observed_query_itself() -> None:
    for kind in (CheckKind.FOREIGN_KEY, CheckKind.VIEW_ROWS):
        [check] = checks_of(kind)
        assert check.observed is not None
        gx_query = check.kwargs["unexpected_rows_query"].format(batch="public.x")  # as GX fills it
        assert f"({check.observed.query})" in gx_query
        assert "public.x" in gx_query and "LIMIT 0" in gx_query  # {batch} is named, never read


def test_a_views_asset_is_its_fingerprint_query_and_its_check_compares_both_baseline_figures() -> None:
    plan = plan_checks(baselines(), survey(), ())
    [check] = [c for c in plan.checks if c.kind is CheckKind.VIEW_ROWS]
    [asset] = [a for a in plan.assets if a.name == "view public.v"]

    assert check.observed is not None and asset.query == check.observed.query
    assert FINGERPRINT_QUERY in asset.query
    gx_query = check.kwargs["unexpected_rows_query"]
    assert "row_count <> 7" in gx_query and f"fingerprint <> '{'ab' * 32}'" in gx_query


def test_checks_the_survey_decides_or_the_catalog_proves_measure_nothing() -> None:
    plan = plan_checks(baselines(), survey(), (("count", "SELECT 1"),))

    observed = {check.kind for check in plan.checks if check.observed is not None}
    assert observed == {CheckKind.FOREIGN_KEY, CheckKind.VIEW_ROWS}


@pytest.mark.parametrize("name", ['odd"name', "brace{x}", "colon:word", "it's"])
def test_awkward_names_reach_great_expectations_quoted_and_escaped(name: str) -> None:
    fk = {"name": f"fk {name}", "columns": [name], "references": f"public.{name}", "referenced_columns": [name]}
    [check] = checks_of(CheckKind.FOREIGN_KEY, baselines(foreign_keys=[fk]))

    assert check.observed is not None
    quoted = '"' + name.replace('"', '""') + '"'
    assert f"child.{quoted} IS NOT NULL" in check.observed.query  # plain SQL for psycopg
    gx_query = check.kwargs["unexpected_rows_query"].format(batch="b")  # str.format, as GX does
    if ":" in name:
        assert "\\:word" in gx_query  # SQLAlchemy's text() would read :word as a bind parameter
    else:
        assert f"child.{quoted} IS NOT NULL" in gx_query


def test_a_check_query_over_a_given_source_reads_that_source_instead() -> None:
    observed = ObservedRows("SELECT 1 AS orphan_rows", "foreign_key_broken")

    query = unexpected_rows_query(observed, "(SELECT * FROM (VALUES (CAST(0 AS bigint))) AS measured(orphan_rows))")

    assert "VALUES (CAST(0 AS bigint))" in query and "SELECT 1 AS orphan_rows" not in query
    assert "orphan_rows <> 0" in query and "{batch}" in query
