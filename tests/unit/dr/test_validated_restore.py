"""The validated plan crosses XCom as a typed record whose JSON keeps the keys its readers use
(the approval body, the audit record, the tests): RestorePlan.to_dict()'s, plus the run's facts."""

from __future__ import annotations

import json

from restore_plans import FACTS, NOW, REASON, RUN_ID, SET_ID, point_in_time, validated

from hms_dr.dr.request import Source, TableName, TargetKind, parse_request, resolve_request
from hms_dr.dr.validated import ValidatedRestore


def test_the_xcom_json_is_the_plans_own_dict_plus_the_run_facts() -> None:
    request = parse_request(
        {"tables": ["appointments"], "reason": REASON, "swap_into_production": True}, run_id=RUN_ID, now=NOW
    )
    plan = resolve_request(
        request, FACTS, set_tables=sorted(FACTS.production_tables), backup_set_id=SET_ID, where="the set"
    )
    record = ValidatedRestore.of(
        plan, run_key="manual__x", scratch_database="hms_dr_scratch_x", scratch_cluster=None, recovery_plan=None
    )
    assert record.to_xcom() == {
        **plan.to_dict(),
        "run_key": "manual__x",
        "scratch_database": "hms_dr_scratch_x",
        "scratch_cluster": None,
        "recovery_plan": None,
    }


def test_a_plan_survives_the_json_round_trip_with_its_types() -> None:
    for plan in (
        validated(swap_into_production=True),
        point_in_time(),
        validated(all_tables=True, tables=[], target_kind="new_database"),
    ):
        again = ValidatedRestore.from_xcom(json.loads(json.dumps(plan.to_xcom())))
        assert again == plan
    pitr = ValidatedRestore.from_xcom(json.loads(json.dumps(point_in_time().to_xcom())))
    assert pitr.source is Source.POINT_IN_TIME and pitr.recovery_plan is not None and pitr.recovery_plan.wal_files == 7
    assert pitr.recovery_target == {"kind": "time", "value": "2026-11-24T13:59:00Z", "inclusive": True}


def test_the_plan_names_its_tables_and_where_they_stay() -> None:
    staged = validated(tables=["billing", "appointments"])
    assert staged.table_names == (TableName("public", "appointments"), TableName("public", "billing"))
    assert staged.target_kind is TargetKind.STAGING_SCHEMA and staged.into_staging_schema
    assert staged.kept_in == staged.staging_schema and staged.kept_in.startswith("dr_staging_")
    new = validated(target_kind="new_database", target_database="dr_restore_appointments")
    assert not new.into_staging_schema and new.kept_in == "dr_restore_appointments"
