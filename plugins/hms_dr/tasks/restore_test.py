"""Task callables of hms_restore_test: choose a set, restore it into a scratch database on the
isolated restore server, check it against the set's baselines, publish the report, tear down.

Each task reads its params, context, Connections and policy, calls one function of the engine's
``hms_dr.restore_test`` and returns the record it gets (``to_xcom()``). The drill's tasks are in
``physical_drill``; both skip the tasks of the part the run's mode leaves out (``skip_unless``).
An upgrade rehearsal's plan names its server's Connection, and every logical task after the
plan restores into, checks and drops on that server (``restore_server``).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import Policy, load_policy
from hms_dr.restore_test import logical
from hms_dr.restore_test.plan import plan_restore_test
from hms_dr.restore_test.records import LogicalRestore, RestoreTestPart, RestoreTestPlan, RestoreTestReport
from hms_dr.tasks.assets import LOGICAL_BACKUPS, RESTORE_TESTS
from hms_dr.tasks.connections import database_connection, decryption_key, open_policy_store, restore_target_connection
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

log = logging.getLogger(__name__)


def skip_unless(plan: RestoreTestPlan, part: RestoreTestPart) -> None:
    """Skip a task of ``part`` when this run's mode leaves it out (the engine decides which)."""
    reason = plan.left_out(part)
    if reason:
        raise AirflowSkipException(reason)


def restore_server(plan: RestoreTestPlan | None, policy: Policy) -> ConnectionInfo:
    """The server this run restores into: the rehearsal server its plan names (the one the plan
    checked, even if the policy changed since), else the policy's restore target."""
    if plan is not None and plan.upgrade_rehearsal is not None:
        return database_connection(plan.upgrade_rehearsal.connection_id)
    return restore_target_connection(policy)


def announce_report(report: RestoreTestReport, stored_at: str) -> None:
    """The hms://restore-tests event's extra: the report, and where it is stored."""
    get_current_context()["outlet_events"][RESTORE_TESTS].extra = {**report.to_xcom(), "report": stored_at}


def _set_that_triggered_this_run() -> str | None:
    """The backup set id of the newest hms://backups/logical event behind this run, if any."""
    events = get_current_context().get("triggering_asset_events") or {}
    try:
        triggered = list(events[LOGICAL_BACKUPS])
    except KeyError:
        return None
    if not triggered:
        return None
    set_id = (triggered[-1].extra or {}).get("backup_set_id")
    if set_id:
        log.info("run triggered by the new daily set %s", set_id)
    return str(set_id) if set_id else None


@task
@engine_errors_decide_retry
def choose_backup_set() -> dict[str, Any]:
    """Validate the params, find the set, and refuse a restore target that is production."""
    params = run_params(get_current_context())
    policy = load_policy()
    return plan_restore_test(
        params,
        triggered_set_id=_set_that_triggered_this_run(),
        store=open_policy_store(policy),
        cluster=policy.cluster,
        restore_test=policy.restore_test,
        staging=policy.staging,
        production=database_connection(policy.cluster.connection_id, policy.cluster.database),
        target=restore_target_connection(policy),
        connect=database_connection,
    ).to_xcom()


@task
@engine_errors_decide_retry
def restore_into_scratch(plan: dict[str, Any]) -> dict[str, Any]:
    """Download and prove the payload, decrypt it, pg_restore it into a fresh scratch database,
    taking each table's content digest as soon as its rows are in."""
    planned = RestoreTestPlan.from_xcom(plan)
    skip_unless(planned, RestoreTestPart.LOGICAL)
    policy = load_policy()
    return logical.restore_into_scratch(
        planned,
        store=open_policy_store(policy),
        cluster=policy.cluster,
        staging=policy.staging,
        key=decryption_key(policy),
        target=restore_server(planned, policy),
    ).to_xcom()


@task(outlets=[RESTORE_TESTS])
@engine_errors_decide_retry
def check_against_baselines(plan: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    """Great Expectations checks of the scratch database against the set's baselines; the report
    is stored whatever the outcome, then a failed check or an RTO over target fails the task."""
    planned = RestoreTestPlan.from_xcom(plan)
    skip_unless(planned, RestoreTestPart.LOGICAL)
    policy = load_policy()
    return logical.check_logical_restore(
        planned,
        LogicalRestore.from_xcom(restored),
        target=restore_server(planned, policy),
        store=open_policy_store(policy),
        cluster=policy.cluster,
        restore_test=policy.restore_test,
        staging=policy.staging,
        rto_minutes=policy.rto_minutes,
        announce=announce_report,
    ).to_xcom()


@task
@engine_errors_decide_retry
def drop_scratch_database(plan: dict[str, Any] | None) -> str:
    """Teardown: drop the scratch database whether the run passed or failed (unless kept)."""
    planned = RestoreTestPlan.from_xcom(plan) if plan else None
    return logical.drop_scratch_database(planned, target=lambda: restore_server(planned, load_policy()))
