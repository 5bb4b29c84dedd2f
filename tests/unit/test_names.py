"""Relation names as SQL writes them, and the schema.name keys baselines hold: a name with
capitals, spaces, dots or quotes reads back as exactly the catalog's (schema, name)."""

from __future__ import annotations

import pytest

from hms_dr.names import (
    RelationName,
    capitals_outside_quotes,
    check_schema_name,
    parse_relation_name,
    relation_key,
    split_relation_key,
    sql_spelling,
)


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        ("appointments", RelationName(None, "appointments")),
        ("Appointments", RelationName(None, "appointments")),  # folded, as PostgreSQL does
        ("public.t", RelationName("public", "t")),
        ('public."MixedCase"', RelationName("public", "MixedCase")),
        ('"Order Details"', RelationName(None, "Order Details")),
        ('"odd schema"."a.b"', RelationName("odd schema", "a.b")),
        ('"say ""hi"""', RelationName(None, 'say "hi"')),
        ("other_schema.t$1", RelationName("other_schema", "t$1")),
    ],
)
def test_reads_a_name_as_postgresql_does(spelled: str, expected: RelationName) -> None:
    assert parse_relation_name(spelled) == expected


@pytest.mark.parametrize(
    ("spelled", "reason"),
    [
        ("", "is not a table name"),
        ('"open', "a quote is not closed"),
        ('""', "an empty quoted name"),
        ("a.b.c", "has 3 dot-separated parts"),
        ("a b", "unexpected ' ' at character 2"),
        ("t;drop", "unexpected ';'"),
        ("\u0430ppointments", "is not a table name"),  # a Cyrillic a: quote it to mean it
        ('"tab\tle"', "control character"),
        ("x" * 64, "longer than 63 bytes"),
        ("public.", "is not a table name"),
    ],
)
def test_refuses_what_is_not_a_name_with_the_reason(spelled: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_relation_name(spelled)


@pytest.mark.parametrize(
    ("schema", "name"), [("public", "Order Details"), ("public", "a.b"), ("s", 'q"uote'), ("MixedSchema", "MixedCase")]
)
def test_a_key_splits_back_into_the_catalogs_names_and_the_spelling_parses_back(schema: str, name: str) -> None:
    assert split_relation_key(relation_key(schema, name)) == (schema, name)
    assert parse_relation_name(sql_spelling(schema, name)) == RelationName(schema, name)
    assert parse_relation_name(RelationName(schema, name).regclass_text()) == RelationName(schema, name)


def test_spelling_quotes_only_what_needs_it() -> None:
    assert sql_spelling("public", "patients") == "public.patients"
    assert sql_spelling("public", "Order Details") == 'public."Order Details"'


def test_a_schema_with_a_dot_is_refused_because_its_keys_would_not_split_back() -> None:
    assert check_schema_name("public") is None
    assert 'schema "a.b" has a dot in its name' in (check_schema_name("a.b") or "")


def test_capitals_outside_quotes_are_told_apart_from_quoted_ones() -> None:
    assert capitals_outside_quotes("Appointments")
    assert not capitals_outside_quotes('public."MixedCase"')
    assert capitals_outside_quotes('Public."MixedCase"')
