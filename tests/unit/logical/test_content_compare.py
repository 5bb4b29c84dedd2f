"""Comparing a restored database's content digests with the baselines: one report row per table
and one for the large objects, each naming what differs; the baselines' own bookkeeping."""

from __future__ import annotations

from typing import Any

from hms_dr.logical.content import METHOD, NO_ROWS, ContentDigests, compare_content, record_content

A = {"rows": 3, "digest": "a" * 32}
B = {"rows": 3, "digest": "b" * 32}


def digests(tables: dict[tuple[str, str], Any], large_objects: Any = None) -> ContentDigests:
    return ContentDigests(METHOD, "UTF8", tables, large_objects)


def baselines(**tables: Any) -> dict[str, Any]:
    return {"tables": {name.replace("__", "."): {"content": content} for name, content in tables.items()}}


def by_target(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in rows}


def test_equal_content_passes_and_says_so() -> None:
    rows = compare_content(baselines(public__patients=A), digests({("public", "patients"): A}))
    assert rows == [
        {
            "check": "table_content",
            "target": "public.patients",
            "expected": A,
            "observed": A,
            "passed": True,
            "message": "table public.patients: every value of its 3 rows as in the backup (digest aaaaaaaaaaaa)",
            "data_docs_page": None,
        }
    ]


def test_same_count_other_digest_fails_as_a_changed_value() -> None:
    row = compare_content(baselines(public__billing=A), digests({("public", "billing"): B}))[0]
    assert not row["passed"]
    assert row["message"] == (
        "table public.billing content differs from the backup: 3 rows as in the baseline, but at"
        " least one value differs (digest bbbbbbbbbbbb, baseline aaaaaaaaaaaa)"
    )


def test_other_count_fails_naming_both_counts_and_a_missing_table_fails() -> None:
    rows = by_target(
        compare_content(
            baselines(public__a=A, public__b=A), digests({("public", "a"): {"rows": 2, "digest": "c" * 32}})
        )
    )
    assert rows["public.a"]["message"] == "table public.a has 2 rows, baseline 3 (content digest)"
    assert rows["public.b"]["message"] == "table public.b has no data in the restored database (baseline 3 rows)"
    assert not rows["public.a"]["passed"] and not rows["public.b"]["passed"]


def test_a_table_with_no_rows_needs_no_data_block() -> None:
    # A partitioned table's parent: pg_dump writes its rows under its partitions, none under it.
    row = compare_content(baselines(public__parent=dict(NO_ROWS)), digests({}))[0]
    assert row["passed"] and row["observed"] == NO_ROWS


def test_tables_without_a_recorded_digest_are_not_rows() -> None:
    old = {"tables": {"public.patients": {"rows": 3}}}
    assert compare_content(old, digests({("public", "patients"): A})) == []


def test_large_objects_compare_by_count_then_digest() -> None:
    expected = {"tables": {}, "large_objects": A}
    assert compare_content(expected, digests({}, A))[0]["passed"]
    changed = compare_content(expected, digests({}, B))[0]
    assert not changed["passed"] and changed["message"].startswith("large objects differ from the backup: 3 as in the")
    lost = compare_content(expected, digests({}, None))[0]
    assert lost["message"] == "the restored database has 0 large objects, baseline 3"


def test_a_digest_that_could_not_be_taken_fails_every_row_with_the_reason() -> None:
    rows = compare_content({**baselines(public__a=A), "large_objects": A}, None, error="pg_dump exited 1: boom")
    assert [row["passed"] for row in rows] == [False, False]
    assert rows[0]["message"] == "table public.a content could not be digested: pg_dump exited 1: boom"


def test_record_content_fills_rows_and_digests_from_the_whole_dump() -> None:
    recorded: dict[str, Any] = {"tables": {"public.a": {"columns": []}, "public.parent": {"columns": []}}}
    record_content(recorded, digests({("public", "a"): A}))
    assert recorded["tables"]["public.a"] == {"columns": [], "content": A, "rows": 3}
    assert recorded["tables"]["public.parent"]["rows"] == 0
    assert recorded["large_objects"] == NO_ROWS
    assert recorded["content_digest"]["session_settings"]["TimeZone"] == "UTC"
