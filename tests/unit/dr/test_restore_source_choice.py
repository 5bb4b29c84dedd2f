"""Where a DR restore takes its tables from (hms_dr.dr.source.scratch_for): a logical set is
restored into the scratch database the plan names, on the restore server; a point in time is
recovered into a scratch cluster below the first allowed data root (else staging)."""

from __future__ import annotations

from pathlib import Path

from restore_plans import point_in_time, validated

from hms_dr.dr.source import ScratchDatabase, remove_source, scratch_for
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import DrPolicy, StagingPolicy
from hms_dr.scratch.cluster import ScratchCluster

STAGING = StagingPolicy(dir=Path("/var/lib/hms-dr/staging"), min_free_mib=1024, reserve_ratio=1.5)


def test_a_logical_set_is_restored_into_the_scratch_database_the_plan_names() -> None:
    plan = validated()
    scratch = scratch_for(plan, dr=DrPolicy(allowed_data_roots=(Path("/pitr"),)), staging=STAGING)
    assert scratch == ScratchDatabase(str(plan.scratch_database)) and scratch.name.startswith("hms_dr_scratch_")


def test_a_point_in_time_is_recovered_below_the_first_allowed_data_root() -> None:
    plan = point_in_time()
    scratch = scratch_for(plan, dr=DrPolicy(allowed_data_roots=(Path("/pitr/a"), Path("/pitr/b"))), staging=STAGING)
    assert isinstance(scratch, ScratchCluster)
    assert scratch.home.parent == Path("/pitr/a/dr-restore") and scratch.data_dir == scratch.home / "data"


def test_without_a_data_root_the_scratch_cluster_goes_below_staging() -> None:
    scratch = scratch_for(point_in_time(), dr=DrPolicy(), staging=STAGING)
    assert isinstance(scratch, ScratchCluster) and scratch.home.is_relative_to(STAGING.dir)


def test_the_teardown_of_a_run_that_planned_nothing_touches_nothing() -> None:
    def no_server() -> ConnectionInfo:
        raise AssertionError("nothing planned: the restore server is not asked for")

    assert remove_source(None, dr=DrPolicy(), staging=STAGING, restore_target=no_server) == "nothing planned"
