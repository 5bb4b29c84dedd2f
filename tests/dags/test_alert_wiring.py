"""Every task of every DAG alerts when it fails for good; every DAG with a policy deadline has it,
except when `airflow dags test` parses the DAGs (apache/airflow#73428)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_DEADLINES = {
    "hms_daily_logical_backup": ("DagRunLogicalDateDeadline", 7200),
    "hms_wal_archive": ("DagRunLogicalDateDeadline", 600),
    "hms_weekly_base_backup": ("DagRunLogicalDateDeadline", 6 * 3600),
    "hms_restore_test": ("DagRunQueuedAtDeadline", 240 * 60),
    "hms_backup_freshness": ("DagRunLogicalDateDeadline", 600),
    "hms_offsite_sync": ("DagRunLogicalDateDeadline", 6 * 3600),
    "hms_integrity_check": ("DagRunLogicalDateDeadline", 4 * 3600),
    "hms_dr_restore": ("DagRunQueuedAtDeadline", 240 * 60),
    "hms_dr_pitr": ("DagRunQueuedAtDeadline", 240 * 60),
}
PROBE = (
    "import json, sys\n"
    "sys.argv = %r\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    "dags = DagBag(dag_folder=%r).dags\n"
    "print(json.dumps({i: [[a.reference.reference_name, a.interval.total_seconds(), a.callback.path] for a in d.deadline or []]"
    " for i, d in dags.items()}))\n"
)


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_every_task_alerts_the_policy_channels_when_it_fails_for_good(dagbag) -> None:  # type: ignore[no-untyped-def]
    from hms_dr.tasks.alerting import AlertChain

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            callbacks = (
                task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
            )
            assert any(isinstance(c, AlertChain) for c in callbacks), f"{dag_id}.{task.task_id} has no AlertChain"
            assert not task.on_retry_callback, f"{dag_id}.{task.task_id} would alert on a retry"


def deadlines_as_parsed_by(argv: list[str]) -> dict[str, list[list[object]]]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (argv, str(REPO_ROOT / "dags"))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parsed: dict[str, list[list[object]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def test_the_scheduler_sees_each_dag_s_deadline_and_dags_test_sees_none() -> None:
    scheduled = deadlines_as_parsed_by(["airflow", "dag-processor"])
    for dag_id, (reference, seconds) in EXPECTED_DEADLINES.items():
        assert scheduled[dag_id] == [[reference, seconds, "hms_dr.tasks.alerting.alert_deadline_missed"]], dag_id
    under_dags_test = deadlines_as_parsed_by(["airflow", "dags", "test", "hms_daily_logical_backup"])
    assert set(under_dags_test) == set(scheduled)
    assert all(alerts == [] for alerts in under_dags_test.values())
