"""What the first step of hms_dr_restore hands every later step: the request resolved into a
:class:`~hms_dr.dr.request.RestorePlan`, plus what validation settled for this run (its key, the
scratch database or cluster the restore will use, the point-in-time recovery plan).

It crosses XCom as :class:`ValidatedRestore`, a typed record whose JSON is the plan's own
``RestorePlan.to_dict()`` with those run facts beside it (the audit record and the approval body
read the same keys), so a later step reads fields, never string keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hms_dr.dr.request import RestorePlan, Source, TableName, TargetKind
from hms_dr.records import Record


@dataclass(frozen=True)
class RecoveryPlanCheck(Record):
    """A point in time's recovery plan, as validation found it (the base backup, the WAL files)."""

    target: dict[str, Any]  # RecoveryTarget.to_dict()
    backup_set_id: str
    plan_reason: str
    wal_files: int
    # The base sets rebuilt before replay, full first (one id: a full set); and what the plan
    # passed over (a newer chain with a missing link), for the approver to read.
    chain: tuple[str, ...] = ()
    plan_warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidatedRestore(Record):
    """The validated plan of one hms_dr_restore run (field names: ``RestorePlan.to_dict()``'s)."""

    source: Source
    backup_id: str
    backup_set_id: str | None  # the logical set, resolved from "latest"
    recovery_target: dict[str, Any] | None  # point_in_time: RecoveryTarget.to_dict()
    tables: tuple[str, ...]  # qualified (schema.name), as named in the source
    whole_database: bool
    target_kind: TargetKind
    target_database: str | None
    staging_schema: str | None
    quarantine_schema: str
    run_quality_checks: bool
    swap_into_production: bool
    reason: str
    notes: tuple[str, ...]
    run_key: str
    scratch_database: str | None  # logical_backup: the scratch database on the restore server
    scratch_cluster: dict[str, str] | None  # point_in_time: ScratchCluster.to_dict()
    recovery_plan: RecoveryPlanCheck | None  # point_in_time

    @classmethod
    def of(
        cls,
        plan: RestorePlan,
        *,
        run_key: str,
        scratch_database: str | None,
        scratch_cluster: dict[str, str] | None,
        recovery_plan: RecoveryPlanCheck | None,
    ) -> ValidatedRestore:
        return cls.from_xcom(
            {
                **plan.to_dict(),
                "run_key": run_key,
                "scratch_database": scratch_database,
                "scratch_cluster": scratch_cluster,
                "recovery_plan": recovery_plan.to_xcom() if recovery_plan else None,
            }
        )

    @property
    def table_names(self) -> tuple[TableName, ...]:
        return tuple(TableName.parse(name) for name in self.tables)

    @property
    def into_staging_schema(self) -> bool:
        return self.target_kind is TargetKind.STAGING_SCHEMA

    @property
    def kept_in(self) -> str | None:
        """Where the restored tables stay: the staging schema or the new database."""
        return self.staging_schema or self.target_database
