"""Measuring ahead of Great Expectations: the rows measured become literal values in exactly the
checks they were measured for; anything that could not be measured is left to GX."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hms_dr.quality.measure import MeasuredRows, literal_rows, measuring_ahead, with_measured_rows
from hms_dr.quality.plan import CheckKind, CheckPlan, Survey, plan_checks


def plan() -> CheckPlan:
    tables = {
        "public.child": {
            "columns": [["id", "bigint", True]],
            "rows": 10,
            "primary_key": ["id"],
            "foreign_keys": [
                {"name": "child_a_fkey", "columns": ["a"], "references": "public.parent", "referenced_columns": ["id"]},
                {"name": "child_b_fkey", "columns": ["b"], "references": "public.parent", "referenced_columns": ["id"]},
            ],
        },
        "public.parent": {"columns": [["id", "bigint", True]], "rows": 3, "primary_key": ["id"], "foreign_keys": []},
    }
    survey = Survey(
        frozenset(tables),
        frozenset({"public.v"}),
        {"public.v": "SELECT 1 AS row_count"},
        frozenset(),
        {name: ("id",) for name in tables},
    )
    return plan_checks({"tables": tables, "views": {"public.v": {"rows": 7, "fingerprint": "f" * 64}}}, survey, ())


def index_of(checks: Any, target: str) -> int:
    return next(i for i, check in enumerate(checks) if check.target == target)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (0, "CAST(0 AS bigint)"),
        (2**63, "CAST('9223372036854775808' AS numeric)"),
        ("it's", "CAST('it''s' AS text)"),
        (Decimal("1.50"), "CAST('1.50' AS numeric)"),
        (True, "TRUE"),
    ],
)
def test_measured_values_become_typed_literals(value: Any, literal: str) -> None:
    query = literal_rows(MeasuredRows(("x",), ((value,),), 0.1))

    assert query == f'(SELECT * FROM (VALUES ({literal})) AS measured("x"))'


@pytest.mark.parametrize("rows", [(), ((None,),), ((1.5,),)])
def test_rows_with_no_literal_form_here_are_not_rendered(rows: tuple[tuple[Any, ...], ...]) -> None:
    assert literal_rows(MeasuredRows(("x",), rows, 0.1)) is None


def test_only_the_measured_check_reads_its_measured_rows_and_says_so() -> None:
    original = plan()
    measured = index_of(original.checks, "public.child child_a_fkey")
    other = index_of(original.checks, "public.child child_b_fkey")

    updated = with_measured_rows(original, {measured: MeasuredRows(("orphan_rows",), ((2,),), 1.25)})

    check = updated.checks[measured]
    gx_query = check.kwargs["unexpected_rows_query"].format(batch="public.child")
    assert 'FROM (SELECT * FROM (VALUES (CAST(2 AS bigint))) AS measured("orphan_rows")) AS observed' in gx_query
    assert "NOT EXISTS" not in gx_query  # GX does not count the orphans again
    assert "measured by hms-dr in 1.2 s" in check.kwargs["description"]
    assert check.observed is not None and check.observed.query in check.kwargs["description"]
    assert updated.checks[other] == original.checks[other]
    assert updated.assets == original.assets
    assert [c for i, c in enumerate(updated.checks) if i != measured] == [
        c for i, c in enumerate(original.checks) if i != measured
    ]


def test_a_measurement_without_rows_leaves_the_query_to_great_expectations() -> None:
    original = plan()
    view = index_of(original.checks, "public.v")

    assert with_measured_rows(original, {view: MeasuredRows(("row_count", "fingerprint"), (), 0.1)}) == original


def test_checks_whose_rows_cannot_be_measured_keep_their_own_query() -> None:
    original = plan()
    unreachable = {"host": "127.0.0.1", "port": "1", "dbname": "x", "user": "x", "connect_timeout": "2"}

    with measuring_ahead(original, unreachable, connections=2) as measurement:
        completed = measurement.complete(original)

    assert completed == original
    assert any(check.kind is CheckKind.FOREIGN_KEY and check.observed for check in completed.checks)
