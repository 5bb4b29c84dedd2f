"""Task callables of hms_daily_logical_backup: preflight, back up, read back, publish, expire.

Each step reloads the policy (cheap) and rebuilds its inputs from the Connections, so a retry
of one step needs nothing but the XCom of the steps before it, which holds no secret.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr import logical, preflight, publish
from hms_dr.baseline import summarize_baselines
from hms_dr.logical.run import LogicalRun
from hms_dr.manifest import BackupKind
from hms_dr.policy import load_policy
from hms_dr.publish import ReadBack
from hms_dr.tasks.assets import LOGICAL_BACKUPS
from hms_dr.tasks.connections import database_connection, encryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.retention import expire_primary, expiry_xcom
from hms_dr.units import human_bytes

log = logging.getLogger(__name__)

LOGICAL_KINDS = (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA)


@task
@engine_errors_decide_retry
def check_preconditions() -> dict[str, Any]:
    """Connect as the backup role, check its privileges, tool versions, store, space and key."""
    policy = load_policy()
    conn = database_connection(policy.cluster.connection_id, policy.cluster.database)
    return preflight.run_preflight(
        conn,
        open_policy_store(policy),
        encryption_key(policy),
        cluster=policy.cluster.name,
        logical_backup=policy.logical_backup,
        compression=policy.compression,
        staging=policy.staging,
        policy_source=policy.source,
    )


@task
@engine_errors_decide_retry
def dump_in_one_snapshot() -> dict[str, Any]:
    """Baselines, the whole-database dump and the schema/data exports, streamed into the store."""
    policy = load_policy()
    conn = database_connection(policy.cluster.connection_id, policy.cluster.database)
    result = logical.take_logical_backup(
        conn,
        open_policy_store(policy),
        encryption_key(policy),
        cluster=policy.cluster.name,
        logical_backup=policy.logical_backup,
        compression=policy.compression,
        staging=policy.staging,
    )
    for line in summarize_baselines(result.baselines):
        log.info("baseline %s", line)
    return result.to_xcom()


@task
@engine_errors_decide_retry
def read_back_payloads(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Re-read every stored payload and compare its sha256 with what was written."""
    policy = load_policy()
    store = open_policy_store(policy)
    stored = [p for d in LogicalRun.from_xcom(run).dumps for p in d.payloads]
    if not policy.store.verify_readback:
        log.warning("store.verify_readback is off: payloads are checked by size only")
        return [ReadBack(key=p.key, size_bytes=store.stat(p.key).size_bytes).to_xcom() for p in stored]
    return [publish.verify_stored_payload(store, p.key, p.payload).to_xcom() for p in stored]


@task(outlets=[LOGICAL_BACKUPS])
@engine_errors_decide_retry
def publish_manifests(run: dict[str, Any], readback: list[dict[str, Any]]) -> dict[str, Any]:
    """Write each set's manifest last (exports first, the whole-database set last) and announce it."""
    policy = load_policy()
    store = open_policy_store(policy)
    context = get_current_context()
    producer = {"dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
    result = LogicalRun.from_xcom(run)
    read = {ReadBack.from_xcom(r).key for r in readback}
    unread = [p.key for d in result.dumps for p in d.payloads if p.key not in read]
    if unread:
        raise RuntimeError(f"refusing to publish payloads that were not read back: {unread}")
    manifests = logical.publish_logical_sets(store, result, producer)
    logical_manifest = store.describe(manifests[BackupKind.LOGICAL.value])
    context["outlet_events"][LOGICAL_BACKUPS].extra = {
        "backup_set_id": result.backup_set_id,
        "manifest": logical_manifest,
        "cluster": result.cluster,
    }
    total = sum(p.payload.size_bytes for d in result.dumps for p in d.payloads)
    log.info(
        "backup set %s complete: %s (%s in %d payloads of %d sets)",
        result.backup_set_id,
        logical_manifest,
        human_bytes(total),
        sum(len(d.payloads) for d in result.dumps),
        len(manifests),
    )
    return {"backup_set_id": result.backup_set_id, "manifests": {k: store.describe(v) for k, v in manifests.items()}}


@task
@engine_errors_decide_retry
def expire_old_sets() -> dict[str, Any]:
    """Apply the retention plan to the daily sets (exports go with their daily set) and to
    leftovers of interrupted runs."""
    return expiry_xcom(expire_primary(load_policy(), LOGICAL_KINDS))
