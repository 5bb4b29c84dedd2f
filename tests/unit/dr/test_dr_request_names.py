"""The DR form names tables as SQL spells them: a quoted name with a space or capitals finds the
set's table by its catalog (schema, name), never by text, and a list typed as one text splits
between names, not inside quotes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hms_dr.dr.request import TableName, TargetFacts, parse_request, resolve_request
from hms_dr.errors import RequestRefused

NOW = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)
SET_TABLES = ["public.Order Details", "public.MixedCase", "public.mixedcase", "sales.a.b", "public.patients"]
REASON = "restoring the order details a clerk deleted"


def plan_for(tables: object) -> tuple[TableName, ...]:
    request = parse_request({"tables": tables, "reason": REASON}, run_id="manual__x", now=NOW)
    facts = TargetFacts("shop", frozenset(SET_TABLES), frozenset({"public", "sales"}))
    return resolve_request(
        request, facts, set_tables=SET_TABLES, backup_set_id="20261124T020001Z", where="backup set X"
    ).tables


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (['public."Order Details"'], (TableName("public", "Order Details"),)),
        (['"Order Details"'], (TableName("public", "Order Details"),)),
        (['"MixedCase"'], (TableName("public", "MixedCase"),)),
        (["mixedcase"], (TableName("public", "mixedcase"),)),
        (['sales."a.b"'], (TableName("sales", "a.b"),)),
        ('public."Order Details", patients', (TableName("public", "Order Details"), TableName("public", "patients"))),
    ],
)
def test_a_table_is_found_by_its_catalog_name(given: object, expected: tuple[TableName, ...]) -> None:
    assert plan_for(given) == expected


def test_a_name_the_set_lacks_is_refused_listing_the_sets_tables_as_sql_spells_them() -> None:
    with pytest.raises(
        RequestRefused,
        match=r"""table '"Order details"' is not in backup set X \(its tables: "MixedCase", "Order Details", mixedcase, patients, "a.b"\)""",
    ):
        plan_for(['"Order details"'])


def test_a_key_with_a_dot_in_the_table_name_splits_at_the_schema() -> None:
    assert TableName.parse("sales.a.b") == TableName("sales", "a.b")
    assert TableName("public", "Order Details").spelled == 'public."Order Details"'
