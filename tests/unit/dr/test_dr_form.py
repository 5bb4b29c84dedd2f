"""hms_dr_restore's trigger form: each param refuses bad input on its own (the API answers HTTP
400 before a run exists); what needs the set or production is the first task's (test_dr_request)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def params() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "hms_dr_restore.py"))
    assert dagbag.import_errors == {}
    return dagbag.dags["hms_dr_restore"].params


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tables", ["patients; DROP TABLE billing"]),
        ("tables", ['appointments"']),
        ("tables", ["\u0430ppointments"]),  # Cyrillic a
        ("tables", ["appointments", "appointments"]),
        ("staging_schema", "x'; DROP SCHEMA public CASCADE; --"),
        ("staging_schema", "public"),
        ("staging_schema", "pg_temp"),
        ("staging_schema", "dr_quarantine_x"),
        ("target_database", "Hospital Management"),
        ("target_database", "hospital_management"),  # production's, from the policy
        ("target_database", "template1"),
        ("backup_id", "20261124"),
        ("backup_id", "latest; DROP DATABASE x"),
        ("source", "snapshot"),
        ("target_kind", "production"),
        ("target_time", "yesterday 14:00"),
        ("target_lsn", "0/3000060; SELECT 1"),
        ("target_restore_point", "before cleanup'"),
        ("reason", "oops"),
        ("reason", "            "),
        ("swap_into_production", "yes"),
    ],
)
def test_the_form_refuses_each_bad_value(params: Any, name: str, value: Any) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        params.get_param(name).resolve(value)


def test_the_form_requires_a_reason_and_accepts_a_good_request(params: Any) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        params.get_param("reason").resolve()
    assert params.get_param("swap_into_production").resolve() is False  # a swap is never the default
    assert params.get_param("run_quality_checks").resolve() is True
    good = {
        "source": "point_in_time",
        "target_time": "2026-11-24T13:59:00Z",
        "tables": ["appointments", "public.billing"],
        "staging_schema": "dr_stage_1",
        "swap_into_production": True,
        "reason": "rows deleted from appointments at 14:00",
    }
    for name, value in good.items():
        assert params.get_param(name).resolve(value) == value


def test_every_table_is_a_choice_of_its_own_and_never_the_default(params: Any) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    assert params.get_param("all_tables").resolve() is False  # read first: resolve(value) keeps the value
    assert params.get_param("all_tables").resolve(True) is True
    with pytest.raises(ParamValidationError):
        params.get_param("all_tables").resolve("yes")


def test_the_integrity_check_s_suggested_conf_is_one_this_form_and_the_first_task_accept(params: Any) -> None:
    from datetime import datetime

    from hms_dr.dr.request import parse_request
    from hms_dr.integrity import suggested_restore
    from hms_dr.params import refuse_unknown_params

    conf = suggested_restore(["public.appointments", "billing.invoices"], report_id="20261128T060012Z")
    refuse_unknown_params(conf, params.keys(), dag_id="hms_dr_restore")
    for name, value in conf.items():
        assert params.get_param(name).resolve(value) == value, name
    request = parse_request(
        conf, run_id="manual__2026-11-28T06:30:00+00:00", now=datetime(2026, 11, 28, 6, 30, tzinfo=UTC)
    )
    assert (
        request.tables == ("appointments", "billing.invoices")
        and not request.all_tables
        and request.swap_into_production
    )


@pytest.mark.parametrize(
    "value", [["appointments"], ["public.appointments"], ['public."Order Details"'], ['"MixedCase"'], ['"say ""hi"""']]
)
def test_the_form_accepts_table_names_as_sql_spells_them(params: Any, value: list[str]) -> None:
    assert params.get_param("tables").resolve(value) == value
