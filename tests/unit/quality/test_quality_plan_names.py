"""Check plans for tables whose names GX would get wrong: a table also fingerprinted as a view
gets two assets of different names, and a schema GX would fold to lower case is read through a
query that quotes it."""

from __future__ import annotations

from hms_dr.quality.plan import AssetSpec, CheckKind, Survey, plan_checks, unique_asset_name

TABLE = {"columns": [["id", "integer", True]], "rows": 2, "primary_key": ["id"], "foreign_keys": []}


def test_a_table_named_in_baseline_views_gets_a_table_asset_and_a_fingerprint_asset() -> None:
    baselines = {
        "tables": {"public.Order Details": TABLE},
        "views": {"public.Order Details": {"rows": 2, "fingerprint": "ab" * 32}},
    }
    survey = Survey(
        frozenset({"public.Order Details"}),
        frozenset({"public.Order Details"}),
        {"public.Order Details": 'SELECT 1 FROM "public"."Order Details"'},
        frozenset(),
        {"public.Order Details": ("id",)},
    )
    plan = plan_checks(baselines, survey, ())
    names = [a.name for a in plan.assets]
    assert len(names) == len(set(names))
    assert {"public.Order Details", "view public.Order Details"} <= set(names)
    [view_check] = [c for c in plan.checks if c.kind is CheckKind.VIEW_ROWS]
    assert view_check.asset == "view public.Order Details"
    [table_asset] = [a for a in plan.assets if a.name == "public.Order Details"]
    assert table_asset.table == ("public", "Order Details")


def test_a_mixed_case_schema_is_read_through_a_quoted_query() -> None:
    baselines = {"tables": {"Sales.Orders": TABLE}, "views": {}}
    survey = Survey(frozenset({"Sales.Orders"}), frozenset(), {}, frozenset(), {"Sales.Orders": ("id",)})
    [asset] = [a for a in plan_checks(baselines, survey, ()).assets if a.name == "Sales.Orders"]
    assert asset.table is None and asset.query is not None and '"Sales"."Orders"' in asset.query


def test_an_asset_name_already_taken_gets_a_number() -> None:
    taken = [AssetSpec("view public.v"), AssetSpec("view public.v (2)")]
    assert unique_asset_name("view public.v", taken) == "view public.v (3)"
    assert unique_asset_name("view public.w", taken) == "view public.w"
