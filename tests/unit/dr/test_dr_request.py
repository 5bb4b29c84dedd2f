"""hms_dr_restore's request: every param validated again by the first task, alone and together,
then against the set and production; each bad input is one clear line and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hms_dr.dr.request import (
    QUARANTINE_PREFIX,
    STAGING_PREFIX,
    RestoreRequest,
    Source,
    TableName,
    TargetFacts,
    TargetKind,
    parse_request,
    resolve_request,
    run_key,
)
from hms_dr.errors import RequestRefused

RUN_ID = "manual__2026-11-24T14:05:00+00:00"
NOW = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)  # when that run was triggered
REASON = "rows deleted from appointments at 14:00 by a bad cleanup job"
SET_TABLES = ["public.appointments", "public.billing", "public.patients", "audit.appointments_log"]


def params(**overrides: Any) -> dict[str, Any]:
    return {
        "source": "logical_backup",
        "backup_id": "latest",
        "tables": ["appointments"],
        "target_kind": "staging_schema",
        "staging_schema": None,
        "target_database": None,
        "run_quality_checks": True,
        "swap_into_production": False,
        "reason": REASON,
        **overrides,
    }


def facts(**overrides: Any) -> TargetFacts:
    values: dict[str, Any] = {
        "production_database": "hospital_management",
        "production_tables": frozenset({"public.appointments", "public.billing", "public.patients"}),
        "existing_schemas": frozenset({"public", "pg_catalog", "information_schema"}),
        **overrides,
    }
    return TargetFacts(**values)


def test_a_good_request_gets_staging_and_quarantine_names_from_the_run() -> None:
    request = parse_request(params(swap_into_production=True), run_id=RUN_ID, now=NOW)
    assert request.source is Source.LOGICAL_BACKUP and request.target_kind is TargetKind.STAGING_SCHEMA
    assert request.tables == ("appointments",) and request.swap_into_production and request.reason == REASON
    assert request.staging_schema == STAGING_PREFIX + "manual__2026_11_24t14_05_00_00_00"
    assert request.quarantine_schema == QUARANTINE_PREFIX + "manual__2026_11_24t14_05_00_00_00"
    assert len(request.quarantine_schema) <= 63


def test_a_long_run_id_still_gives_identifiers_postgres_keeps_whole() -> None:
    key = run_key("manual__" + "x" * 200)
    assert len(key) <= 40 and len(QUARANTINE_PREFIX + key) <= 63
    assert run_key("manual__" + "x" * 200) != run_key("manual__" + "x" * 199 + "y")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"tables": ["patients; DROP TABLE billing"]},
            r"table 'patients; DROP TABLE billing' is not a table name as SQL writes it",
        ),
        ({"tables": ['appointments"']}, r"is not a table name as SQL writes it"),
        ({"tables": ["\u0430ppointments"]}, r"'\\u0430ppointments' is not a table name as SQL writes it"),  # Cyrillic a
        ({"tables": ["appointments\n"]}, r"is not a table name as SQL writes it"),  # a pattern with $ lets this through
        (
            {"tables": ["Appointments"]},
            r"'Appointments' has capitals outside double quotes: write 'appointments', or quote",
        ),
        ({"tables": ['public."Order Details']}, r"a quote is not closed"),
        ({"tables": ["a.b.c"]}, r"'a.b.c' has 3 dot-separated parts"),
        ({"tables": "appointments; billing"}, r"'appointments;' is not a table name as SQL writes it"),
        ({"staging_schema": "stage'; DROP SCHEMA public; --"}, r"staging_schema .* is not a plain identifier"),
        ({"staging_schema": "st\u0430ging"}, r"staging_schema 'st\\u0430ging' is not a plain identifier"),
        ({"staging_schema": "public"}, r"staging_schema 'public' is reserved"),
        ({"staging_schema": "pg_temp"}, r"staging_schema 'pg_temp' is reserved"),
        ({"staging_schema": "dr_quarantine_x"}, r"is reserved"),
        (
            {"target_kind": "new_database", "target_database": 'x" WITH OWNER postgres'},
            r"target_database .* is not a plain identifier",
        ),
        (
            {"target_kind": "new_database", "target_database": "template1"},
            r"target_database 'template1' is a system database",
        ),
        ({"backup_id": "20261124"}, r"backup_id must be 'latest' or a set id"),
        ({"backup_id": "../20261124T020001Z"}, r"backup_id must be"),
        ({"source": "snapshot"}, r"source must be one of logical_backup, point_in_time"),
        ({"target_kind": "production"}, r"target_kind must be one of"),
        ({"reason": None}, r"reason is required"),
        ({"reason": "   "}, r"reason is required"),
        ({"reason": "oops"}, r"reason 'oops' is too short"),
        ({"reason": "x" * 2001}, r"at most 2000"),
        ({"reason": "deleted rows\x1b[31m bad"}, r"control character"),
        ({"swap_into_production": "yes"}, r"swap_into_production must be true or false"),
        (
            {"swap_into_production": True, "target_kind": "new_database"},
            r"swap_into_production needs target_kind staging_schema",
        ),
        (
            {"target_kind": "new_database", "staging_schema": "dr_x"},
            r"staging_schema applies to target_kind staging_schema only",
        ),
        ({"target_database": "dr_x"}, r"target_database applies to target_kind new_database only"),
        ({"target_time": "2026-11-24T13:59:00Z"}, r"target_time applies to source point_in_time only"),
        ({"source": "point_in_time"}, r"needs exactly one of target_time, target_lsn, target_restore_point"),
        (
            {"source": "point_in_time", "target_time": "2026-11-24T13:59:00Z", "target_lsn": "0/3000060"},
            r"got target_lsn, target_time",
        ),
        ({"source": "point_in_time", "target_time": "2026-11-24 13:59"}, r"has no time zone"),
        ({"source": "point_in_time", "target_lsn": "3000060"}, r"is not of the form X/X"),
        ({"tables": ["t"] * 1 + [f"t{i}" for i in range(100)]}, r"at most 100 per run"),
    ],
)
def test_each_bad_input_is_refused_with_a_line_naming_it(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRefused, match=message) as caught:
        parse_request(params(**overrides), run_id=RUN_ID, now=NOW)
    assert "\n" not in caught.value.message


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(RequestRefused) as caught:
        parse_request(params(tables=["a;b"], backup_id="x", reason=""), run_id=RUN_ID, now=NOW)
    assert caught.value.message.count("; ") >= 2


def test_a_point_in_time_request_carries_its_recovery_target() -> None:
    request = parse_request(
        params(source="point_in_time", target_time="2026-11-24T13:59:00+01:00"), run_id=RUN_ID, now=NOW
    )
    assert request.recovery_target == {"kind": "time", "value": "2026-11-24T12:59:00Z", "inclusive": True}
    named = parse_request(params(source="point_in_time", target_restore_point="before_cleanup"), run_id=RUN_ID, now=NOW)
    assert named.recovery_target == {"kind": "name", "value": "before_cleanup", "inclusive": True}


def request_for(**overrides: Any) -> RestoreRequest:
    return parse_request(params(**overrides), run_id=RUN_ID, now=NOW)


def test_bare_names_resolve_in_the_set_and_all_tables_means_every_table() -> None:
    plan = resolve_request(
        request_for(), facts(), set_tables=SET_TABLES, backup_set_id="20261124T020001Z", where="backup set X"
    )
    assert plan.tables == (TableName("public", "appointments"),) and not plan.whole_database
    every = resolve_request(
        request_for(tables=[], all_tables=True), facts(), set_tables=SET_TABLES, backup_set_id="X", where="backup set X"
    )
    assert every.whole_database and len(every.tables) == 4
    assert every.to_dict()["tables"] == sorted(SET_TABLES)


@pytest.mark.parametrize("empty", [[], None, "", "  "])
def test_an_empty_tables_list_is_refused_unless_every_table_is_asked_for(empty: Any) -> None:
    """A typo (``table``) once left ``tables`` at its default and restored every table: every
    table is now its own explicit choice, and an empty list alone is one line naming both."""
    with pytest.raises(RequestRefused) as caught:
        parse_request(params(tables=empty), run_id=RUN_ID, now=NOW)
    assert caught.value.message == (
        "tables is empty: name the tables to restore (e.g. appointments), or set all_tables to restore every table"
    )
    assert parse_request(params(tables=empty, all_tables=True), run_id=RUN_ID, now=NOW).all_tables


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"all_tables": True},
            r"^all_tables restores every table, so tables must be empty: name the tables and turn all_tables off",
        ),
        ({"all_tables": "yes"}, r"^all_tables must be true or false, got 'yes'$"),
        (
            {"tables": ["a;b"]},
            r"^table 'a;b' is not a table name as SQL writes it: .* unexpected ';' at character 2$",
        ),  # not also "tables is empty"
    ],
)
def test_all_tables_and_tables_do_not_contradict_each_other(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRefused, match=message):
        parse_request(params(**overrides), run_id=RUN_ID, now=NOW)


def test_a_point_in_time_target_in_the_future_says_so_with_the_current_time() -> None:
    with pytest.raises(RequestRefused) as caught:
        parse_request(params(source="point_in_time", target_time="2026-11-24T16:00:00+01:00"), run_id=RUN_ID, now=NOW)
    assert caught.value.message == (
        "recovery target time 2026-11-24T15:00:00Z is in the future (now 2026-11-24T14:05:00Z): "
        "no WAL exists for it yet; choose a moment before now"
    )
    exactly_now = parse_request(
        params(source="point_in_time", target_time="2026-11-24T14:05:00Z"), run_id=RUN_ID, now=NOW
    )
    assert exactly_now.recovery_target is not None and exactly_now.recovery_target["value"] == "2026-11-24T14:05:00Z"


def test_tables_of_earlier_dr_runs_are_only_restored_when_named_with_their_schema() -> None:
    tables = ["public.appointments", "dr_quarantine_manual__1.appointments", "dr_staging_manual__1.appointments"]
    plan = resolve_request(request_for(), facts(), set_tables=tables, backup_set_id="X", where="set X")
    assert plan.tables == (TableName("public", "appointments"),)
    every = resolve_request(
        request_for(tables=[], all_tables=True), facts(), set_tables=tables, backup_set_id="X", where="set X"
    )
    assert every.tables == plan.tables
    named = resolve_request(
        request_for(tables=["dr_quarantine_manual__1.appointments"]),
        facts(),
        set_tables=tables,
        backup_set_id="X",
        where="set X",
    )
    assert named.tables == (TableName("dr_quarantine_manual__1", "appointments"),)


@pytest.mark.parametrize(
    ("request_overrides", "fact_overrides", "message"),
    [
        (
            {"tables": ["prescriptions"]},
            {},
            r"table 'prescriptions' is not in backup set X \(its tables: appointments_log, appointments, billing",
        ),
        ({"tables": ["other.appointments"]}, {}, r"table 'other.appointments' is not in backup set X"),
        (
            {"staging_schema": "dr_stage"},
            {"existing_schemas": frozenset({"public", "dr_stage"})},
            r"staging schema 'dr_stage' already exists",
        ),
        ({"staging_schema": "audit", "tables": ["audit.appointments_log"]}, {}, r"is where the tables live"),
        ({"tables": ["appointments", "audit.appointments_log"], "staging_schema": "s"}, {}, None),
        (
            {"target_kind": "new_database", "target_database": "hospital_management"},
            {},
            r"is the production database: refused",
        ),
        (
            {"target_kind": "new_database", "target_database": "old_copy"},
            {"target_database_exists": True, "target_database_tables": 12},
            r"target_database 'old_copy' already exists and holds 12 relation",
        ),
        (
            {"swap_into_production": True, "tables": ["audit.appointments_log"]},
            {},
            r"audit.appointments_log does not exist in production",
        ),
    ],
)
def test_a_request_that_does_not_fit_the_set_or_the_target_is_refused(
    request_overrides: dict[str, Any], fact_overrides: dict[str, Any], message: str | None
) -> None:
    request = request_for(**request_overrides)
    if message is None:
        resolve_request(
            request, facts(**fact_overrides), set_tables=SET_TABLES, backup_set_id="X", where="backup set X"
        )
        return
    with pytest.raises(RequestRefused, match=message):
        resolve_request(
            request, facts(**fact_overrides), set_tables=SET_TABLES, backup_set_id="X", where="backup set X"
        )


def test_two_tables_of_one_name_cannot_share_a_staging_schema() -> None:
    tables = ["public.appointments", "archive.appointments"]
    request = request_for(tables=["public.appointments", "archive.appointments"])
    with pytest.raises(RequestRefused, match=r"would both be appointments in the staging schema"):
        resolve_request(request, facts(), set_tables=tables, backup_set_id="X", where="set X")
    with pytest.raises(
        RequestRefused, match=r"'appointments' is ambiguous .*: name one of archive.appointments, public.appointments"
    ):
        resolve_request(request_for(), facts(), set_tables=tables, backup_set_id="X", where="set X")


def test_an_existing_empty_database_may_receive_a_restore() -> None:
    request = request_for(target_kind="new_database", target_database="hms_inspect")
    plan = resolve_request(
        request,
        facts(target_database_exists=True, target_database_tables=0),
        set_tables=SET_TABLES,
        backup_set_id="X",
        where="set X",
    )
    assert plan.to_dict()["target_database"] == "hms_inspect"


def test_a_point_in_time_restore_takes_production_s_tables_and_says_there_is_no_baseline() -> None:
    request = request_for(source="point_in_time", target_time="2026-11-24T13:59:00Z")
    plan = resolve_request(request, facts(), set_tables=None, backup_set_id=None, where="production")
    assert plan.tables == (TableName("public", "appointments"),)
    assert "no baselines" in plan.notes[0]
