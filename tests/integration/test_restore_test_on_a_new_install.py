"""hms_restore_test on a new install: the policy's default mode (both) and a store that holds a
daily set but no base backup yet. The run restores the set logically and passes; the physical
drill is skipped, and the log says why, instead of the run failing until the first Sunday."""

from __future__ import annotations

from typing import Any

import pytest

from hms_dr.catalog import list_catalog
from hms_dr.manifest import BackupKind

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_restore_test"
CLUSTER = "hms-new-install"  # a folder of its own: no base backup set was ever stored there
POLICY = {"cluster.name": CLUSTER, "restore_test.mode": "both"}


def test_mode_both_without_a_base_backup_runs_logical_only_with_a_warning(dag_runner: Any, primary_store: Any) -> None:
    backup = dag_runner.run("hms_daily_logical_backup", name="new-install", policy=POLICY)
    assert backup.state == "success", backup.output[-6000:]
    assert not list_catalog(primary_store, CLUSTER, BackupKind.BASE).sets

    outcome = dag_runner.run(DAG_ID, name="new-install", policy=POLICY)

    assert outcome.state == "success", outcome.output[-8000:]
    plan = dag_runner.returned(DAG_ID, outcome.run_id, "choose_backup_set")
    assert plan["mode"] == "logical" and "physical" not in plan
    assert "mode both runs logical only: the store holds no base backup set yet" in outcome.output
    assert outcome.task_states["check_against_baselines"] == "success"
    assert {
        outcome.task_states[t] for t in ("recover_for_drill", "check_recovered_cluster", "verify_checksums_offline")
    } == {"skipped"}
    reports = list_catalog(primary_store, CLUSTER, BackupKind.RESTORE_TEST).sets
    assert [(r.manifest.body["mode"], r.manifest.body["passed"]) for r in reports] == [("logical", True)]
