"""Retention as the DAGs apply it: the policy's tiers, and one call that expires given kinds of
the primary store. Every DAG that writes a kind expires that kind after it has written, through
the one planner in hms_dr.retention (so WAL always follows the base backups that plan keeps)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hms_dr.manifest import BackupKind
from hms_dr.policy import Policy
from hms_dr.retention import KindExpiry, RetentionTiers, expire_by_tiers
from hms_dr.tasks.connections import open_policy_store


def expiry_xcom(expiries: dict[str, KindExpiry]) -> dict[str, Any]:
    """A retention task's XCom: per kind name, its KindExpiry.to_xcom() (KindExpiry.from_xcom reads one)."""
    return {kind: expiry.to_xcom() for kind, expiry in expiries.items()}


def retention_tiers(policy: Policy) -> RetentionTiers:
    r = policy.retention
    return RetentionTiers(
        logical_days=r.logical_days,
        wal_days=r.wal_days,
        base_backups_keep=r.base_backups_keep,
        restore_reports_days=r.restore_reports_days,
        offsite_days=r.offsite_days,
        orphan_max_age=timedelta(hours=r.orphan_payload_hours),
        weekly_keep=r.gfs_weekly_keep,
        monthly_keep=r.gfs_monthly_keep,
    )


def expire_primary(policy: Policy, kinds: Sequence[BackupKind]) -> dict[str, KindExpiry]:
    """Apply the primary store's retention plan to ``kinds``; what was kept, expired and locked per kind."""
    return expire_by_tiers(
        open_policy_store(policy),
        policy.cluster.name,
        retention_tiers(policy),
        datetime.now(UTC),
        offsite=False,
        kinds=tuple(kinds),
    )
