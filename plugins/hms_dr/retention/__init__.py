"""Retention: which backup sets and leftovers to delete, decided by a pure planner, then applied.

``records`` holds the rule and the plan; ``plan`` plans every tier of a store without reading
anything (base backups a whole chain of incrementals at a time; ``wal`` plans the WAL, which
follows the base backups kept); ``apply`` reads a store, plans and deletes, manifest first,
an incremental before the links of its chain.
"""

from __future__ import annotations

from hms_dr.retention.apply import (
    RetentionOutcome,
    apply_retention,
    apply_retention_plan,
    expire_by_tiers,
    read_store_catalog,
)
from hms_dr.retention.plan import (
    DAILY_EXPORT_KINDS,
    RetentionTiers,
    StoreCatalog,
    base_backup_wal_start,
    grandfather_father_son_keeps,
    keep_newest_wal_set,
    plan_base_backup_retention,
    plan_retention,
    plan_store_retention,
)
from hms_dr.retention.records import Expiry, KindExpiry, RetentionPlan, RetentionRule, describe_age
from hms_dr.retention.wal import BaseBackupWal, oldest_base_backup, plan_wal_expiry, wal_position

__all__ = [
    "DAILY_EXPORT_KINDS",
    "BaseBackupWal",
    "Expiry",
    "KindExpiry",
    "RetentionOutcome",
    "RetentionPlan",
    "RetentionRule",
    "RetentionTiers",
    "StoreCatalog",
    "apply_retention",
    "apply_retention_plan",
    "base_backup_wal_start",
    "describe_age",
    "expire_by_tiers",
    "grandfather_father_son_keeps",
    "keep_newest_wal_set",
    "oldest_base_backup",
    "plan_base_backup_retention",
    "plan_retention",
    "plan_store_retention",
    "plan_wal_expiry",
    "read_store_catalog",
    "wal_position",
]
