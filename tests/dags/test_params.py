"""A run may be asked only for the params its DAG declares: a key no param declares is refused,
in one line naming it (and the param it was probably meant to be) and every param there is.
Airflow 3.3 lets such a key through at trigger time, so the first task of every DAG with params
refuses it (tests/integration/test_refused_requests.py runs each of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hms_dr.errors import RequestRefused
from hms_dr.params import refuse_unknown_params

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every DAG that declares params; the integration test triggers each with an unknown key.
DAGS_WITH_PARAMS = (
    "hms_dr_restore",
    "hms_dr_pitr",
    "hms_restore_test",
    "hms_integrity_check",
    "hms_offsite_sync",
    "hms_weekly_base_backup",
)


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_the_dags_with_params_are_the_ones_whose_first_task_is_tested(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert sorted(dag_id for dag_id, dag in dagbag.dags.items() if dag.params) == sorted(DAGS_WITH_PARAMS)


def test_a_mistyped_key_is_refused_naming_it_what_it_was_meant_to_be_and_every_param(dagbag) -> None:  # type: ignore[no-untyped-def]
    declared = dagbag.dags["hms_dr_restore"].params.keys()
    with pytest.raises(RequestRefused) as caught:
        refuse_unknown_params(
            {"table": ["appointments"], "reason": "rows deleted by a bad cleanup"}, declared, dag_id="hms_dr_restore"
        )
    assert caught.value.message == (
        "hms_dr_restore has no param 'table' (did you mean 'tables'?): refused before anything was done; its params are "
        "all_tables, backup_id, reason, run_quality_checks, source, staging_schema, swap_into_production, tables, "
        "target_database, target_kind, target_lsn, target_restore_point, target_time"
    )


@pytest.mark.parametrize("dag_id", DAGS_WITH_PARAMS)
def test_every_declared_param_and_no_conf_at_all_are_accepted(dagbag, dag_id: str) -> None:  # type: ignore[no-untyped-def]
    declared = list(dagbag.dags[dag_id].params.keys())
    refuse_unknown_params({name: None for name in declared}, declared, dag_id=dag_id)
    refuse_unknown_params({}, declared, dag_id=dag_id)


def test_every_unknown_key_is_named_on_one_line_even_a_strange_one() -> None:
    with pytest.raises(RequestRefused) as caught:
        refuse_unknown_params(
            {"b\u0430ckup_id": 1, "x\ny": 2, "z" * 500: 3, "mode": "both"},
            ["backup_id", "mode"],
            dag_id="hms_restore_test",
        )
    message = caught.value.message
    assert message.startswith(
        "hms_restore_test has no param 'b\\u0430ckup_id' (did you mean 'backup_id'?), 'x\\ny', 'zzz"
    )
    assert message.endswith("...': refused before anything was done; its params are backup_id, mode")
    assert "\n" not in str(caught.value) and len(message) < 300


def test_the_approval_names_the_tables_or_says_every_table() -> None:
    import jinja2

    from hms_dr.tasks.dr_restore import APPROVAL_SUBJECT

    def subject(params: dict[str, Any]) -> str:
        return jinja2.Template(APPROVAL_SUBJECT).render(params=params)

    assert subject({"tables": ["appointments", "public.billing"], "all_tables": False}) == (
        "hms_dr_restore: swap appointments, public.billing into production?"
    )
    assert subject({"tables": [], "all_tables": True}) == "hms_dr_restore: swap every table into production?"
