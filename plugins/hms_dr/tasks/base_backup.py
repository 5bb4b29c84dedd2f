"""Task callables of hms_weekly_base_backup: take, verify and store a base backup; keep the newest N."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr.manifest import BackupKind
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.physical.incremental import BackupTypeRequest
from hms_dr.policy import load_policy
from hms_dr.tasks.assets import BASE_BACKUPS
from hms_dr.tasks.connections import database_connection, encryption_key, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params
from hms_dr.tasks.retention import expire_primary

log = logging.getLogger(__name__)


@task(outlets=[BASE_BACKUPS])
@engine_errors_decide_retry
def back_up_cluster() -> dict[str, Any]:
    """pg_basebackup (full, or incremental against the newest set: the ``backup_type`` param and
    the policy decide) as the replication role, proven against its backup_manifest (in the stream,
    or by pg_verifybackup with base_backup.method staged), compressed, encrypted, stored, read back
    and published with the manifest last."""
    context = get_current_context()
    params = run_params(context)
    request = BackupTypeRequest(params.get("backup_type") or BackupTypeRequest.AUTO.value)
    policy = load_policy()
    settings = policy.base_backup
    settings.staging_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    result = take_base_backup(
        database_connection(policy.cluster.replication_connection_id, policy.cluster.database),
        open_policy_store(policy),
        policy.cluster.name,
        encryption_key=encryption_key(policy),
        staging_dir=settings.staging_dir,
        zstd_level=settings.zstd_level,
        zstd_threads=settings.zstd_threads,
        method=settings.method,
        staging_limit_bytes=settings.staging_limit_mb << 20,
        staging_space_ratio=settings.staging_space_ratio,
        verify_readback=policy.store.verify_readback,
        producer={"dag_id": context["dag"].dag_id, "run_id": context["run_id"]},
        backup_type=request,
        incremental_enabled=settings.incremental,
        full_every_days=settings.full_every_days,
    )
    base = result["base_backup"]
    context["outlet_events"][BASE_BACKUPS].extra = {
        "backup_set_id": result["backup_set_id"],
        "manifest": result["manifest"],
        "cluster": policy.cluster.name,
        "start_lsn": base["start_lsn"],
        "stop_lsn": base["stop_lsn"],
        "timeline": base["timeline"],
        "backup_type": result["backup_type"],
        "parent_backup_set_id": result["parent_backup_set_id"],
        "chain": result["chain"],
    }
    return result


@task
@engine_errors_decide_retry
def expire_old_base_backups() -> dict[str, Any]:
    """Keep the policy's newest N complete base backups; expire the rest and stale leftovers."""
    return expire_primary(load_policy(), (BackupKind.BASE,))[BackupKind.BASE.value].to_xcom()
