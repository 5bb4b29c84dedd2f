"""Task callables of hms_offsite_sync: reach both stores, copy what the offsite store lacks,
judge how fresh the offsite copies are, then apply retention.

The offsite store is opened here rather than with connections.open_policy_store because its
uploads carry the policy's Object Lock retention when the bucket has Object Lock enabled.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task

from hms_dr.errors import OffsiteCopyStale
from hms_dr.manifest import BackupKind
from hms_dr.offsite.freshness import judge_offsite_freshness
from hms_dr.offsite.sync import SyncReport, sync_offsite
from hms_dr.policy import Policy, load_policy
from hms_dr.retention import expire_by_tiers
from hms_dr.tasks.assets import OFFSITE_COPIES
from hms_dr.tasks.connections import open_policy_store, s3_client
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params
from hms_dr.tasks.retention import expire_primary, expiry_xcom, retention_tiers

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


def open_offsite_store(policy: Policy) -> Store:
    """The offsite store with its own Connection; uploads locked when the bucket has Object Lock."""
    from hms_dr.store import ObjectLockRetention, open_store

    settings = policy.offsite
    url = policy.store.offsite_url
    lock = ObjectLockRetention(settings.object_lock_mode, settings.object_lock_days) if settings.object_lock else None
    client = s3_client(policy.store.offsite_connection_id) if url.startswith("s3://") else None
    return open_store(url, s3_client=client, part_size_bytes=policy.store.part_size_mib << 20, object_lock=lock)


@task
@engine_errors_decide_retry
def check_both_stores() -> dict[str, Any]:
    """The run's params name only this DAG's params; both stores answer with the credentials of
    their own Connections (a HEAD each, nothing written: a probe in a locked bucket could not be
    deleted); says whether uploads are locked."""
    run_params(get_current_context())
    policy = load_policy()
    probe = f"{policy.cluster.name}/.offsite-sync-probe"
    stores = {"primary": open_policy_store(policy), "offsite": open_offsite_store(policy)}
    for role, store in stores.items():
        store.exists(probe)
        log.info("%s store %s answers", role, store.url)
    offsite = stores["offsite"]
    settings = policy.offsite
    if offsite.features.supports_object_lock:
        log.info(
            "offsite uploads carry Object Lock %s for %d days", settings.object_lock_mode, settings.object_lock_days
        )
    else:
        log.warning(
            "offsite store %s has no Object Lock: its copies can be deleted by anyone holding its keys", offsite.url
        )
    return {
        "primary": stores["primary"].url,
        "offsite": offsite.url,
        "object_lock": offsite.features.supports_object_lock,
    }


@task(outlets=[OFFSITE_COPIES])
@engine_errors_decide_retry
def copy_missing_sets() -> dict[str, Any]:
    """Copy every complete set the offsite store lacks (payloads first, each proven by sha256 as
    stored offsite, the manifest last), repair damaged copies, re-verify this week's slot."""
    policy = load_policy()
    context = get_current_context()
    reverify_all = bool(context["params"].get("reverify_all"))
    if reverify_all:
        log.info("reverify_all: every existing offsite set is re-read on this run")
    report = sync_offsite(
        open_policy_store(policy),
        open_offsite_store(policy),
        policy.cluster.name,
        window=timedelta(days=policy.retention.offsite_days),
        now=datetime.now(UTC),
        reverify_weeks=1 if reverify_all else policy.offsite.reverify_weeks,
    )
    context["outlet_events"][OFFSITE_COPIES].extra = {
        kind: {"copied": entry.copied_count, "offsite_sets": entry.offsite_sets} for kind, entry in report.kinds.items()
    }
    return report.to_xcom()


@task
@engine_errors_decide_retry
def check_offsite_freshness(report: dict[str, Any]) -> list[str]:
    """The age of the newest offsite copy per kind; fail (and page) when one is older than allowed
    (offsite.max_age_days: the same judgement hms_backup_freshness makes every 15 minutes)."""
    settings = load_policy().offsite
    kinds = SyncReport.from_xcom(report).kinds
    verdict = judge_offsite_freshness(kinds, settings.max_age_days_for, datetime.now(UTC))
    for line in verdict.lines:
        log.info("%s", line)
    if verdict.problems:
        raise OffsiteCopyStale(
            "; ".join(verdict.problems), hint="read copy_missing_sets' log; is hms_offsite_sync paused or failing?"
        )
    return list(verdict.lines)


@task
@engine_errors_decide_retry
def expire_offsite_sets() -> dict[str, Any]:
    """Offsite retention: every kind for retention.offsite_days, never the newest set of a kind,
    never WAL a kept offsite base backup needs; a set still under Object Lock is reported, not deleted."""
    policy = load_policy()
    return expiry_xcom(
        expire_by_tiers(
            open_offsite_store(policy),
            policy.cluster.name,
            retention_tiers(policy),
            datetime.now(UTC),
            offsite=True,
            kinds=tuple(BackupKind),
        )
    )


@task
@engine_errors_decide_retry
def expire_restore_test_reports() -> dict[str, Any]:
    """Primary retention of restore-test reports (retention.restore_reports_days); the backup DAGs
    expire their own kinds. Runs after the offsite copy, so no report goes before it is offsite."""
    return expiry_xcom(expire_primary(load_policy(), (BackupKind.RESTORE_TEST,)))
