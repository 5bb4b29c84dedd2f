"""Task callables of hms_restore_test: choose a set, restore it into a scratch database on the
isolated restore server, check it against the set's baselines, publish the report, tear down.

RTO is measured from the start of the fetch to the end of the checks, wall clock, so the time
between tasks counts too: that is what an operator would wait in a real restore.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr import restore
from hms_dr.catalog import find_requested_set, find_set
from hms_dr.errors import ParamInvalid, RequestRefused
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import Policy, RestoreTestMode, load_policy
from hms_dr.scratch import database as scratch_databases
from hms_dr.scratch.database import ScratchDatabaseKind, refuse_production_target, scratch_database_name, system_identifier
from hms_dr.scratch.workdir import WorkPurpose, work_folder
from hms_dr.tasks.assets import LOGICAL_BACKUPS, RESTORE_TESTS
from hms_dr.tasks.connections import database_connection, restore_target_connection, decryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params
from hms_dr.tasks.restore_checks import check_and_report, skip_unless
from hms_dr import patterns
from hms_dr.patterns import matcher

log = logging.getLogger(__name__)

BACKUP_ID = matcher(patterns.BACKUP_ID)


def _restore_admin() -> ConnectionInfo:
    return restore_target_connection(load_policy())


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
    named = str(params.get("backup_id") or "latest").strip()
    if not BACKUP_ID.fullmatch(named):
        raise RequestRefused(f"backup_id must be 'latest' or an id like 20261124T020001Z, got {named!a}")
    backup_id = (_set_that_triggered_this_run() or named) if named == "latest" else named
    if not BACKUP_ID.fullmatch(backup_id):  # a new-set event's id: ours, not the operator's, so it pages
        raise ParamInvalid(f"the new-set event names backup set {backup_id!a}, not an id like 20261124T020001Z")
    jobs = int(params.get("restore_jobs") or 2)
    if not 1 <= jobs <= 16:
        raise RequestRefused(f"restore_jobs must be between 1 and 16, got {jobs}")
    policy = load_policy()
    mode = _mode(params, policy)
    store = open_policy_store(policy)
    # A set the operator named and the store lacks is the request's fault; one a new-set event
    # named (or "latest" with none at all) is the system's, and pages.
    find = find_requested_set if named != "latest" else find_set
    backup_set = find(store, policy.cluster.name, BackupKind.LOGICAL, backup_id)
    production = database_connection(policy.cluster.connection_id, policy.cluster.database)
    target = _restore_admin()
    scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, backup_set.backup_set_id)
    refuse_production_target(
        target=target, production=production, scratch_name=scratch,
        target_system_id=system_identifier(target), production_system_id=system_identifier(production),
    )
    log.info(
        "restore test of %s set %s (%s) into scratch database %s on %s:%s",
        backup_set.kind.value, backup_set.backup_set_id, store.describe(backup_set.manifest_key), scratch, target.host, target.port,
    )
    mode = _mode_this_store_can_serve(store, policy, mode, backup_set)
    plan = {
        "backup_set_id": backup_set.backup_set_id,
        "manifest_key": backup_set.manifest_key,
        "scratch_database": scratch,
        "restore_jobs": jobs,
        "keep_scratch": bool(params.get("keep_scratch")),
        "mode": mode.value,
    }
    if mode.physical:
        from hms_dr.tasks.physical_drill import plan_drill

        plan["physical"] = plan_drill(store, policy, backup_set, scratch)
    return plan


def _mode(params: dict[str, Any], policy: Policy) -> RestoreTestMode:
    value = str(params.get("mode") or policy.restore_test.mode.value)
    try:
        return RestoreTestMode(value)
    except ValueError:
        raise RequestRefused(f"mode must be logical, physical or both, got {value!a}") from None


def _mode_this_store_can_serve(store: Any, policy: Policy, mode: RestoreTestMode, backup_set: Any) -> RestoreTestMode:
    """``mode``, or logical only (with a warning saying why) while no base backup can reach the set."""
    from hms_dr.catalog import list_catalog
    from hms_dr.physical.drill_mode import choose_drill_mode

    if not mode.physical:
        return mode
    choice = choose_drill_mode(mode, backup_set, list_catalog(store, policy.cluster.name, BackupKind.BASE).sets)
    if choice.fallback_reason:
        log.warning("%s", choice.fallback_reason)
    return choice.mode


@task
@engine_errors_decide_retry
def restore_into_scratch(plan: dict[str, Any]) -> dict[str, Any]:
    """Download and prove the payload, decrypt it, pg_restore it into a fresh scratch database."""
    skip_unless(plan, "logical")
    policy = load_policy()
    store = open_policy_store(policy)
    fetch_started_at = datetime.now(timezone.utc)
    backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, plan["backup_set_id"])
    workdir = work_folder(policy.staging.dir, WorkPurpose.RESTORE_TEST, plan["scratch_database"])
    try:
        fetched = restore.fetch_for_restore(store, backup_set, decryption_key(policy), workdir)
        admin = _restore_admin()
        scratch_databases.create_scratch_database(admin, plan["scratch_database"])
        restored = restore.run_pg_restore(admin.with_database(plan["scratch_database"]), fetched.path, jobs=plan["restore_jobs"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the decrypted dump never outlives the task
    return {
        "fetch_started_at": fetch_started_at.isoformat(),
        "steps_s": {
            "download_and_verify": round(fetched.download_seconds, 3),
            "decrypt": round(fetched.decrypt_seconds, 3),
            "pg_restore": restored["seconds"],
        },
        "stored_size_bytes": fetched.stored_size_bytes,
        "plain_size_bytes": fetched.plain_size_bytes,
    }


@task(outlets=[RESTORE_TESTS])
@engine_errors_decide_retry
def check_against_baselines(plan: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    """Great Expectations checks of the scratch database against the set's baselines; the report
    is stored whatever the outcome, then a failed check or an RTO over target fails the task."""
    skip_unless(plan, "logical")
    scratch = _restore_admin().with_database(plan["scratch_database"])
    return check_and_report(
        plan, scratch.libpq_dsn(), started_at=restored["fetch_started_at"], steps_s=restored["steps_s"],
        what={"mode": "logical", "scratch_database": plan["scratch_database"]},
    )


@task
@engine_errors_decide_retry
def drop_scratch_database(plan: dict[str, Any] | None) -> str:
    """Teardown: drop the scratch database whether the run passed or failed (unless kept)."""
    if not plan:
        return "nothing to drop: no scratch database was planned"
    if plan.get("keep_scratch"):
        log.warning("keep_scratch is set: scratch database %s is left on the restore server", plan["scratch_database"])
        return f"kept {plan['scratch_database']}"
    existed = scratch_databases.drop_scratch_database(_restore_admin(), plan["scratch_database"])
    return f"dropped {plan['scratch_database']}" if existed else f"{plan['scratch_database']} was never created"
