"""Planning a restore test without Airflow: the request read from the params, the mode this store
can serve (logical only while no base backup reaches the set), the drill planned only when the
mode has it, and the plan as it crosses XCom."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from restore_test_sets import AFTER, BEFORE, DAILY_ID, daily_set

from hms_dr.errors import NoBackupForTarget, ParamInvalid, RequestRefused
from hms_dr.policy import RestoreTestMode, StagingPolicy
from hms_dr.restore_test.plan import mode_for_store, plan_drill, plan_for_set, read_request
from hms_dr.restore_test.records import DrillPlan, RestoreTestPart, RestoreTestPlan

LOGICAL, PHYSICAL, BOTH = RestoreTestMode.LOGICAL, RestoreTestMode.PHYSICAL, RestoreTestMode.BOTH


def request(params: dict[str, Any], triggered: str | None = None, default: RestoreTestMode = BOTH):  # type: ignore[no-untyped-def]
    return read_request(params, triggered_set_id=triggered, default_mode=default)


def test_latest_is_the_newest_set_or_the_one_whose_event_triggered_the_run() -> None:
    plain = request({})
    assert (plain.named, plain.backup_id, plain.restore_jobs, plain.keep_scratch, plain.mode) == (
        "latest",
        "latest",
        2,
        False,
        BOTH,
    )
    assert not plain.operator_named_the_set
    assert request({"backup_id": "latest"}, triggered="20261124T020001Z").backup_id == "20261124T020001Z"
    named = request(
        {"backup_id": " 20261123T020001Z ", "restore_jobs": 4, "keep_scratch": True, "mode": "logical"},
        triggered="20261124T020001Z",
    )
    assert (named.backup_id, named.restore_jobs, named.keep_scratch, named.mode) == (
        "20261123T020001Z",
        4,
        True,
        LOGICAL,
    )
    assert named.operator_named_the_set
    assert request({}, default=PHYSICAL).mode is PHYSICAL


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"backup_id": "yesterday"}, "backup_id must be 'latest' or an id like 20261124T020001Z, got 'yesterday'"),
        ({"restore_jobs": 17}, "restore_jobs must be between 1 and 16, got 17"),
        ({"restore_jobs": -1}, "restore_jobs must be between 1 and 16, got -1"),
        ({"mode": "full"}, "mode must be logical, physical or both, got 'full'"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_param(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRefused) as refused:
        request(params)
    assert refused.value.message == message


def test_a_malformed_set_id_in_the_new_set_event_is_ours_and_pages() -> None:
    with pytest.raises(ParamInvalid) as invalid:
        request({}, triggered="../etc")
    assert not isinstance(invalid.value, RequestRefused)
    assert "the new-set event names backup set '../etc'" in invalid.value.message


@pytest.mark.parametrize(
    ("requested", "base_sets", "mode"),
    [
        (BOTH, [], LOGICAL),
        (PHYSICAL, [AFTER], LOGICAL),
        (BOTH, [BEFORE, AFTER], BOTH),
        (PHYSICAL, [BEFORE], PHYSICAL),
        (LOGICAL, [], LOGICAL),
    ],
)
def test_the_mode_falls_back_to_logical_while_no_base_backup_reaches_the_set(
    requested: RestoreTestMode, base_sets: list[Any], mode: RestoreTestMode, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hms_dr.restore_test.plan"):
        assert mode_for_store(requested, daily_set(), base_sets) is mode
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if mode is requested:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(f"mode {requested.value} runs logical only")


def staging(tmp_path: Path) -> StagingPolicy:
    return StagingPolicy(dir=tmp_path / "staging", min_free_mib=1, reserve_ratio=0.1)


@pytest.mark.parametrize(
    ("requested", "base_sets", "mode"), [(BOTH, [BEFORE], BOTH), (PHYSICAL, [BEFORE], PHYSICAL), (BOTH, [], LOGICAL)]
)
def test_the_drill_is_planned_exactly_when_the_mode_has_it(
    requested: RestoreTestMode, base_sets: list[Any], mode: RestoreTestMode, tmp_path: Path
) -> None:
    plan = plan_for_set(
        request({"mode": requested.value, "restore_jobs": 3}),
        daily_set(),
        base_sets,
        scratch="hms_restore_test_20261111t020000z_a1b2c3",
        staging=staging(tmp_path),
    )
    assert (plan.backup_set_id, plan.manifest_key, plan.restore_jobs, plan.mode) == (
        DAILY_ID,
        f"hms-primary/logical/{DAILY_ID}/manifest.json",
        3,
        mode,
    )
    if not mode.physical:
        assert plan.physical is None
        return
    assert plan.physical is not None
    assert plan.physical.target_lsn == "0/40000500"  # the daily set's snapshot
    assert plan.physical.home == tmp_path / "staging" / "restore-test" / "hms_restore_test_20261111t020000z_a1b2c3-pitr"
    assert plan.physical.data_dir == plan.physical.home / "data"
    assert plan.physical.socket_dir.is_dir()
    plan.physical.socket_dir.rmdir()


def test_a_set_without_a_snapshot_lsn_cannot_be_drilled(tmp_path: Path) -> None:
    with pytest.raises(NoBackupForTarget, match=f"daily set {DAILY_ID} records no snapshot LSN"):
        plan_drill(daily_set(None), tmp_path, "hms_restore_test_x_a1b2c3")


def a_plan(mode: RestoreTestMode, physical: DrillPlan | None = None) -> RestoreTestPlan:
    return RestoreTestPlan(
        backup_set_id=DAILY_ID,
        manifest_key=f"hms-primary/logical/{DAILY_ID}/manifest.json",
        scratch_database="hms_restore_test_20261111t020000z_a1b2c3",
        restore_jobs=2,
        keep_scratch=False,
        mode=mode,
        physical=physical,
    )


DRILL = DrillPlan(
    "0/40000500",
    Path("/s/restore-test/x-pitr"),
    Path("/s/restore-test/x-pitr/data"),
    Path("/tmp/hms-scratch-1"),
    Path("/s/restore-test/x-pitr/log/postgresql.log"),
)


def test_the_plan_crosses_xcom_with_the_keys_it_always_had() -> None:
    logical = a_plan(LOGICAL).to_xcom()
    assert logical == {
        "backup_set_id": DAILY_ID,
        "manifest_key": f"hms-primary/logical/{DAILY_ID}/manifest.json",
        "scratch_database": "hms_restore_test_20261111t020000z_a1b2c3",
        "restore_jobs": 2,
        "keep_scratch": False,
        "mode": "logical",
    }
    assert "physical" not in logical
    both = a_plan(BOTH, DRILL).to_xcom()
    assert both["mode"] == "both" and both["physical"] == {
        "target_lsn": "0/40000500",
        "home": "/s/restore-test/x-pitr",
        "data_dir": "/s/restore-test/x-pitr/data",
        "socket_dir": "/tmp/hms-scratch-1",
        "log_file": "/s/restore-test/x-pitr/log/postgresql.log",
    }
    assert RestoreTestPlan.from_xcom(both) == a_plan(BOTH, DRILL)
    assert RestoreTestPlan.from_xcom(logical) == a_plan(LOGICAL)
    assert DRILL.cluster.data_dir == DRILL.data_dir


@pytest.mark.parametrize(
    ("mode", "runs"),
    [
        (LOGICAL, {RestoreTestPart.LOGICAL}),
        (PHYSICAL, {RestoreTestPart.PHYSICAL}),
        (BOTH, {RestoreTestPart.LOGICAL, RestoreTestPart.PHYSICAL}),
    ],
)
def test_the_mode_decides_which_parts_run(mode: RestoreTestMode, runs: set[RestoreTestPart]) -> None:
    plan = a_plan(mode, DRILL if mode.physical else None)
    for part in RestoreTestPart:
        assert plan.runs(part) is (part in runs)
        assert plan.left_out(part) == (
            None if part in runs else f"mode {mode.value}: no {part.value} restore in this run"
        )
