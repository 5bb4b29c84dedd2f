"""The check step of hms_dr_restore: the restored tables' data quality, their row counts and, when
a swap follows, the swap's plan and the body its approver reads.

Which quality check runs is decided here (``quality_check_for``): none when the request turned
them off; for a point in time, which has no baselines, the restored columns and keys compared with
production's; for a logical set, the set's own baselines (with the policy's smoke queries only
for a whole database restored into a new one: the application's queries name its relations
unqualified).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import find_set
from hms_dr.dr import verify
from hms_dr.dr.request import Source, TableName
from hms_dr.dr.validate import work_dir
from hms_dr.dr.validated import ValidatedRestore
from hms_dr.errors import QualityCheckFailed, SwapRefused
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.records import Record

if TYPE_CHECKING:
    from hms_dr.policy import SmokeQuery, StagingPolicy
    from hms_dr.store import Store

log = logging.getLogger(__name__)

CHECK_FIELDS = ("check", "target", "expected", "observed", "passed")


class QualityCheck(Enum):
    NONE = "none"  # run_quality_checks was false
    PRODUCTION_COLUMNS = "production_columns"  # a point in time: columns and keys against production
    SET_BASELINES = "set_baselines"  # a logical set: the set's baselines


def quality_check_for(plan: ValidatedRestore) -> QualityCheck:
    if not plan.run_quality_checks:
        return QualityCheck.NONE
    if plan.source is Source.POINT_IN_TIME:
        return QualityCheck.PRODUCTION_COLUMNS
    return QualityCheck.SET_BASELINES


def smoke_queries_for(plan: ValidatedRestore, queries: Sequence[SmokeQuery]) -> tuple[SmokeQuery, ...]:
    """The application's queries name its relations unqualified: they only make sense on a whole
    database restored as it was (a new database), never on tables in a staging schema."""
    return tuple(queries) if plan.whole_database and not plan.into_staging_schema else ()


@dataclass(frozen=True)
class QualityChecks(Record):
    passed: bool
    checks: list[dict[str, Any]]  # one row per check: check, target, expected, observed, passed
    failed: list[str]  # one line per failed check
    note: str | None = None


@dataclass(frozen=True)
class RestoredTablesChecked(Record):
    rows_restored: dict[str, int | None]  # by production's qualified name
    checks: QualityChecks | None  # None: not run
    approval_body: str | None  # a swap follows: what the approver reads (Markdown)
    swap_plan: dict[str, Any] | None = None  # a swap follows: SwapPlan.summary(), with its digest
    rows_now: dict[str, int | None] | None = None  # a swap follows: production's rows now

    @property
    def swap_digest(self) -> str:
        if not self.swap_plan:
            raise ValueError("no swap was planned for these tables")
        return str(self.swap_plan["digest"])


def check_restored_tables(
    plan: ValidatedRestore,
    *,
    admin: ConnectionInfo,
    store: Store,
    cluster_name: str,
    staging: StagingPolicy,
    smoke_queries: Sequence[SmokeQuery],
    triggered_by: str,
    run_id: str,
) -> RestoredTablesChecked:
    """The checks (QualityCheckFailed when one fails) and, for a swap, its plan (SwapRefused when
    it cannot be made); ``admin`` is production's admin connection."""
    tables = list(plan.table_names)
    staging_schema = plan.staging_schema if plan.into_staging_schema else None
    target = admin if staging_schema else admin.with_database(str(plan.target_database))
    where = [TableName(staging_schema or t.schema, t.name) for t in tables]
    counted = verify.count_rows(target, where)
    rows_restored = {t.qualified: counted[w.qualified] for t, w in zip(tables, where, strict=False)}
    checks = _quality_checks(
        plan,
        target,
        tables,
        staging_schema,
        admin=admin,
        store=store,
        cluster_name=cluster_name,
        staging=staging,
        smoke_queries=smoke_queries,
    )
    result = RestoredTablesChecked(rows_restored=rows_restored, checks=checks, approval_body=None)
    if plan.swap_into_production:
        from hms_dr.dr.report import approval_body
        from hms_dr.dr.swap import preview_swap

        assert plan.staging_schema is not None
        preview = preview_swap(
            admin, tables, staging_schema=plan.staging_schema, quarantine_schema=plan.quarantine_schema
        )
        rows_now = verify.count_rows(admin, tables)
        summary = preview.summary()
        body = approval_body(
            plan.to_xcom(),
            summary,
            rows_now=rows_now,
            rows_restored=rows_restored,
            checks=checks.to_xcom() if checks else None,
            triggered_by=triggered_by,
            run_id=run_id,
            measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        result = RestoredTablesChecked(
            rows_restored=rows_restored, checks=checks, approval_body=body, swap_plan=summary, rows_now=rows_now
        )
        for line in body.splitlines()[:12]:
            log.info("approval: %s", line)
        if preview.refusals:
            raise SwapRefused(f"the swap cannot be made: {'; '.join(preview.refusals)}")
    if checks is not None and not checks.passed:
        raise QualityCheckFailed(
            f"the restored tables fail {len(checks.failed)} check(s): {'; '.join(checks.failed[:5])}"
        )
    return result


def _quality_checks(
    plan: ValidatedRestore,
    target: ConnectionInfo,
    tables: list[TableName],
    staging_schema: str | None,
    *,
    admin: ConnectionInfo,
    store: Store,
    cluster_name: str,
    staging: StagingPolicy,
    smoke_queries: Sequence[SmokeQuery],
) -> QualityChecks | None:
    kind = quality_check_for(plan)
    if kind is QualityCheck.NONE:
        return None
    if kind is QualityCheck.PRODUCTION_COLUMNS:
        return QualityChecks.from_xcom(
            verify.compare_with_production(admin, target, tables, staging_schema=staging_schema)
        )
    from hms_dr.quality import check_restored_database

    assert plan.backup_set_id is not None
    backup_set = find_set(store, cluster_name, BackupKind.LOGICAL, plan.backup_set_id)
    baselines = verify.baselines_for_restored(
        backup_set.manifest.baselines, tables, staging_schema=staging_schema, whole_database=plan.whole_database
    )
    report_dir = work_dir(staging, plan.run_key) / "report"
    try:
        outcome = check_restored_database(
            target.libpq_dsn(),
            baselines,
            report_dir=report_dir,
            backup_set_id=backup_set.backup_set_id,
            smoke_queries=smoke_queries_for(plan, smoke_queries),
        )
    finally:
        shutil.rmtree(report_dir.parent, ignore_errors=True)
    return QualityChecks(
        passed=bool(outcome["passed"]),
        checks=[{k: c.get(k) for k in CHECK_FIELDS} for c in outcome["checks"]],
        failed=list(outcome["failed"]),
        note=f"against the baselines of backup set {backup_set.backup_set_id}",
    )
