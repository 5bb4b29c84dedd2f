"""restore_test.smoke_queries: the runbook's two are the committed default, a policy without the
key runs none, and every malformed entry is refused with one line naming it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DEFAULT_POLICY_PATH, SmokeQuery, load_policy, parse_policy, read_only_problem


def with_smoke_queries(value: Any) -> dict[str, Any]:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    if value is None:
        del data["restore_test"]["smoke_queries"]
    else:
        data["restore_test"]["smoke_queries"] = value
    return data


def test_committed_policy_holds_the_runbooks_two_smoke_queries() -> None:
    assert load_policy(DEFAULT_POLICY_PATH).restore_test.smoke_queries == (
        SmokeQuery("count of patients", "SELECT COUNT(*) FROM patients"),
        SmokeQuery("first patient summaries", "SELECT * FROM v_patient_summary LIMIT 5"),
    )


def test_a_policy_without_smoke_queries_runs_none() -> None:
    assert parse_policy(with_smoke_queries(None)).restore_test.smoke_queries == ()
    assert parse_policy(with_smoke_queries([])).restore_test.smoke_queries == ()


def test_a_trailing_semicolon_and_quoted_keywords_are_accepted() -> None:
    queries = parse_policy(
        with_smoke_queries(
            [
                {"name": "orders", "sql": "SELECT count(*) FROM \"Order Details\" WHERE note <> 'delete; update';"},
            ]
        )
    ).restore_test.smoke_queries
    assert queries == (SmokeQuery("orders", "SELECT count(*) FROM \"Order Details\" WHERE note <> 'delete; update'"),)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("SELECT 1", "restore_test.smoke_queries must be a list of {name, sql}"),
        ([{"sql": "SELECT 1"}], "restore_test.smoke_queries[1] needs a name"),
        ([{"name": "one", "sql": "  "}], "restore_test.smoke_queries[1] ('one') needs a non-empty sql"),
        ([{"name": "one", "sql": "SELECT 1", "when": "daily"}], "must be a mapping with keys name and sql"),
        ([{"name": "one", "sql": "SELECT 1"}, {"name": "one", "sql": "SELECT 2"}], "names 'one' twice"),
        ([{"name": "two", "sql": "SELECT 1; SELECT 2"}], "('two') sql holds more than one statement"),
        (
            [{"name": "wipe", "sql": "DELETE FROM patients"}],
            "('wipe') sql must start with SELECT, WITH, VALUES or TABLE, not DELETE",
        ),
        (
            [{"name": "cte", "sql": "WITH gone AS (DELETE FROM patients RETURNING *) SELECT count(*) FROM gone"}],
            "('cte') sql is not read-only: it uses DELETE",
        ),
        ([{"name": "copy", "sql": "SELECT * INTO patients_copy FROM patients"}], "it uses INTO"),
    ],
)
def test_a_bad_smoke_query_is_refused_with_a_line_naming_it(entries: Any, message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(with_smoke_queries(entries), source="test.yaml")
    assert message in str(caught.value)
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("SELECT 1", None),
        ("  values (1), (2)  ", None),
        ("TABLE patients", None),
        ("SELECT $$ DROP TABLE x; $$ AS text -- ; update\n", None),
        ("/* DELETE */ SELECT 1", None),
        ("SELECT id FROM patients FOR UPDATE", "is not read-only: it uses UPDATE"),
        ("-- only a comment", "is empty"),
        ("VACUUM patients", "must start with SELECT, WITH, VALUES or TABLE, not VACUUM"),
    ],
)
def test_read_only_problem_sees_through_quotes_and_comments(statement: str, problem: str | None) -> None:
    assert read_only_problem(statement) == problem


@pytest.mark.parametrize("name", ['"Order Details"', 'public."MixedCase"', '"Sales"."Q1 ""totals"""', "billing"])
def test_quoted_relation_names_are_accepted_in_baseline_views_and_data_only_tables(name: str) -> None:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    data["logical_backup"]["baseline_views"] = [name]
    data["logical_backup"]["data_only_tables"] = [name]
    policy = parse_policy(data)
    assert policy.logical_backup.baseline_views == (name,) == policy.logical_backup.data_only_tables


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MixedCase", "capitals outside double quotes"),
        ('"unterminated', "a quote is not closed"),
        ("a.b.c", "has 3 dot-separated parts"),
        ('""', "an empty quoted name"),
    ],
)
def test_unquoted_mixed_case_and_malformed_names_are_refused(name: str, reason: str) -> None:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    data["logical_backup"]["baseline_views"] = [name]
    with pytest.raises(PolicyInvalid, match=reason):
        parse_policy(data)
