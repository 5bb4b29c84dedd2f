"""Which quality check a DR restore runs (hms_dr.dr.check_restored): none when turned off; for a
point in time (no baselines), the restored columns and keys against production; for a logical
set, its baselines, with the policy's smoke queries only for a whole database in a new one."""

from __future__ import annotations

import pytest
from restore_plans import point_in_time, validated

from hms_dr.dr.check_restored import (
    QualityCheck,
    QualityChecks,
    RestoredTablesChecked,
    quality_check_for,
    smoke_queries_for,
)
from hms_dr.policy import SmokeQuery

SMOKE = (SmokeQuery("upcoming appointments", "SELECT count(*) FROM appointments WHERE starts_at > now()"),)


def test_turned_off_no_check_runs_whatever_the_source() -> None:
    assert quality_check_for(validated(run_quality_checks=False)) is QualityCheck.NONE
    assert quality_check_for(point_in_time(run_quality_checks=False)) is QualityCheck.NONE


def test_a_point_in_time_is_compared_with_production_and_a_set_with_its_baselines() -> None:
    assert quality_check_for(point_in_time()) is QualityCheck.PRODUCTION_COLUMNS
    assert quality_check_for(validated()) is QualityCheck.SET_BASELINES


def test_smoke_queries_run_only_on_a_whole_database_restored_into_a_new_one() -> None:
    assert smoke_queries_for(validated(all_tables=True, tables=[], target_kind="new_database"), SMOKE) == SMOKE
    assert smoke_queries_for(validated(all_tables=True, tables=[]), SMOKE) == ()  # a staging schema: names would miss
    assert smoke_queries_for(validated(target_kind="new_database"), SMOKE) == ()  # some tables only


def test_the_check_record_carries_the_swap_digest_only_when_a_swap_was_planned() -> None:
    checks = QualityChecks(
        passed=True,
        checks=[
            {"check": "row_count", "target": "public.appointments", "expected": 8538, "observed": 8538, "passed": True}
        ],
        failed=[],
        note="against the baselines",
    )
    planned = RestoredTablesChecked(
        rows_restored={"public.appointments": 8538},
        checks=checks,
        approval_body="body",
        swap_plan={"digest": "a3" * 32, "tables": []},
        rows_now={"public.appointments": 7723},
    )
    assert planned.swap_digest == "a3" * 32
    assert RestoredTablesChecked.from_xcom(planned.to_xcom()) == planned
    with pytest.raises(ValueError, match="no swap was planned"):
        _ = RestoredTablesChecked(rows_restored={}, checks=None, approval_body=None).swap_digest
