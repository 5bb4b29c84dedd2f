"""pg_restore --list prints names unquoted: a table whose name holds a space, or whose
description is several words, is still read as its own (schema, name)."""

from __future__ import annotations

from hms_dr.pgtools import exact_table_pattern, parse_restore_list

LISTING = """;
; Archive created at 2026-11-24 02:00:01 UTC
3401; 0 16390 TABLE DATA public Order Details hms_admin
3402; 0 16391 TABLE DATA public Order hms_admin
3403; 0 16392 TABLE DATA other schema a.b hms_admin
3404; 0 16393 MATERIALIZED VIEW DATA public totals hms_admin
3405; 0 0 BLOBS - BLOBS \n3406; 0 16400 BLOB - 16400 hms_admin
"""


def test_known_names_with_spaces_and_dots_are_matched_whole() -> None:
    known = {("public", "Order Details"), ("public", "Order"), ("other schema", "a.b")}
    entries = parse_restore_list(LISTING, known)
    table_data = {(schema, name) for description, schema, name in entries if description == "TABLE DATA"}
    assert table_data == known


def test_without_known_names_the_owner_is_the_last_word_and_the_rest_the_name() -> None:
    entries = parse_restore_list(LISTING)
    assert ("TABLE DATA", "public", "Order Details") in entries
    assert ("MATERIALIZED VIEW DATA", "public", "totals") in entries
    assert ("BLOB", "-", "16400") in entries


def test_a_materialized_views_data_is_not_a_tables() -> None:
    entries = parse_restore_list(LISTING, {("public", "totals")})
    assert [d for d, s, n in entries if n == "totals"] == ["MATERIALIZED VIEW DATA"]


def test_a_table_pattern_is_quoted_so_pg_dump_reads_it_literally() -> None:
    assert exact_table_pattern("public", "Order Details") == '"public"."Order Details"'
    assert exact_table_pattern("s", 'a"*') == '"s"."a""*"'
