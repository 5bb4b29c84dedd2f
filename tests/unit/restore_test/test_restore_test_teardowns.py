"""The restore test's teardowns without Airflow: nothing planned, nothing to do; a kept run keeps
its scratch database and cluster (and never asks for the restore server); otherwise the drill's
cluster goes, home and private socket directory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from restore_test_sets import BEFORE, DAILY_ID, daily_set

from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import RestoreTestMode, StagingPolicy
from hms_dr.restore_test.drill import remove_drill_cluster
from hms_dr.restore_test.logical import drop_scratch_database
from hms_dr.restore_test.plan import plan_for_set, read_request

SCRATCH = "hms_restore_test_20261111t020000z_a1b2c3"


def no_restore_server() -> ConnectionInfo:
    raise AssertionError("the teardown asked for the restore server with nothing to drop")


def planned(tmp_path: Path, mode: RestoreTestMode, *, keep: bool = False):  # type: ignore[no-untyped-def]
    request = read_request({"mode": mode.value, "keep_scratch": keep}, triggered_set_id=None, default_mode=mode)
    return plan_for_set(
        request,
        daily_set(),
        [BEFORE],
        scratch=SCRATCH,
        staging=StagingPolicy(dir=tmp_path / "staging", min_free_mib=1, reserve_ratio=0.1),
    )


def test_without_a_plan_the_teardowns_have_nothing_to_do() -> None:
    assert drop_scratch_database(None, target=no_restore_server) == "nothing to drop: no scratch database was planned"
    assert remove_drill_cluster(None) == "no physical drill was planned"


def test_a_logical_run_plans_no_drill_to_remove(tmp_path: Path) -> None:
    assert remove_drill_cluster(planned(tmp_path, RestoreTestMode.LOGICAL)) == "no physical drill was planned"


def test_a_kept_run_keeps_its_scratch_database_and_its_cluster(tmp_path: Path) -> None:
    plan = planned(tmp_path, RestoreTestMode.BOTH, keep=True)
    assert plan.physical is not None and plan.backup_set_id == DAILY_ID
    assert drop_scratch_database(plan, target=no_restore_server) == f"kept {SCRATCH}"
    plan.physical.data_dir.mkdir(parents=True)
    assert remove_drill_cluster(plan) == f"kept {plan.physical.data_dir}"
    assert plan.physical.data_dir.is_dir() and plan.physical.socket_dir.is_dir()
    remove_drill_cluster(replace(plan, keep_scratch=False))


def test_the_drills_cluster_goes_home_and_socket_directory(tmp_path: Path) -> None:
    plan = planned(tmp_path, RestoreTestMode.PHYSICAL)
    assert plan.physical is not None
    (plan.physical.data_dir / "base").mkdir(parents=True)
    plan.physical.log_file.parent.mkdir(parents=True)
    plan.physical.log_file.write_text("LOG: database system is shut down\n")
    assert remove_drill_cluster(plan) == f"removed {plan.physical.home}, {plan.physical.socket_dir}"
    assert not plan.physical.home.exists() and not plan.physical.socket_dir.exists()
    assert remove_drill_cluster(plan) == "nothing to remove"
