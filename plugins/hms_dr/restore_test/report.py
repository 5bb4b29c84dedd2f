"""What the logical restore and the drill share once a copy is restored: the checks against the
daily set's baselines (``hms_dr.quality``), the report (the RTO verdict, every step's duration),
stored as a restore-test set of its own and announced, then the run's verdict.

A stored report is a restore-test set: ``summary.json`` and ``report.html`` to read directly, the
Great Expectations Data Docs as one archive that opens offline, and a manifest whose body the
status page and the freshness check read (tested_set, mode, base_backup_set_id, passed, rto_s,
rto_target_s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import find_set, key_for
from hms_dr.errors import QualityCheckFailed
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.policy import ClusterPolicy, RestoreTestPolicy, StagingPolicy
from hms_dr.publish import publish_set
from hms_dr.restore_test.records import RestoreTestPart, RestoreTestPlan, RestoreTestReport
from hms_dr.restore_test.rto import RtoVerdict, rto_verdict
from hms_dr.scratch.workdir import WorkPurpose, work_folder

if TYPE_CHECKING:
    from hms_dr.logical.content import DigestTaken
    from hms_dr.store import Store

log = logging.getLogger(__name__)

# Called once the report is stored, before a failed check or RTO fails the step: the report and
# where it is stored (as the store describes it).
Announce = Callable[[RestoreTestReport, str], None]


@dataclass(frozen=True)
class RestoredCopy:
    """A restored copy of the daily set, ready for the checks: how to reach it, since when the RTO
    clock runs, the steps it took so far, and what the report says about it."""

    part: RestoreTestPart
    dsn: str = field(repr=False)  # libpq key=value; may hold a password: never logged
    started_at: datetime
    steps_s: dict[str, float]
    scratch_database: str | None = None  # logical
    base_backup_set_id: str | None = None  # physical
    target_lsn: str | None = None
    timeline: int | None = None
    recovery_end_lsn: str | None = None
    upgrade_rehearsal: str | None = None  # logical, rehearsing an upgrade: "PostgreSQL 15.18 → 18.6"
    content: DigestTaken | None = None  # logical: the content digests taken as it was restored


def build_report(
    copy: RestoredCopy,
    outcome: Mapping[str, Any],
    *,
    backup_set_id: str,
    backup_manifest: str,
    rto: RtoVerdict,
    checks_s: float,
) -> RestoreTestReport:
    """The report of ``copy`` from the checks' ``outcome`` (``hms_dr.quality.check_restored_database``):
    passed only when every check passed and the RTO is within target."""
    return RestoreTestReport(
        backup_set_id=backup_set_id,
        backup_manifest=backup_manifest,
        mode=copy.part,
        scratch_database=copy.scratch_database,
        base_backup_set_id=copy.base_backup_set_id,
        target_lsn=copy.target_lsn,
        timeline=copy.timeline,
        recovery_end_lsn=copy.recovery_end_lsn,
        passed=bool(outcome["passed"]) and rto.within_target,
        checks_passed=outcome["passed"],
        checks=outcome["checks"],
        failed=outcome["failed"],
        rto_s=round(rto.seconds, 3),
        rto_target_s=rto.target_s,
        steps_s={**copy.steps_s, "quality_checks": round(checks_s, 3)},
        upgrade_rehearsal=copy.upgrade_rehearsal,
    )


def report_failure(report: RestoreTestReport, rto: RtoVerdict) -> QualityCheckFailed | None:
    """What fails the step: a check that differs from the baselines first, then an RTO over target."""
    if not report.checks_passed:
        return QualityCheckFailed(f"{report.restored_what} differs from its baselines: {'; '.join(report.failed[:5])}")
    over = rto.failure(report.restored_what)
    return QualityCheckFailed(over) if over else None


def manifest_extra(report: RestoreTestReport) -> dict[str, Any]:
    """What a stored report's manifest says of it (the status page and the freshness check read it)."""
    return {
        "tested_set": {"kind": BackupKind.LOGICAL.value, "backup_set_id": report.backup_set_id},
        "mode": report.mode.value,
        **({"base_backup_set_id": report.base_backup_set_id} if report.mode is RestoreTestPart.PHYSICAL else {}),
        "passed": report.passed,
        "rto_s": report.rto_s,
        "rto_target_s": report.rto_target_s,
        # A rehearsal passed proves the set restores exactly on the newer major too.
        **({"upgrade_rehearsal": report.upgrade_rehearsal} if report.upgrade_rehearsal else {}),
    }


def store_report(
    store: Store, cluster: str, report_dir: Path, started_at: datetime, finished_at: datetime, report: RestoreTestReport
) -> str:
    """Upload the report as a restore-test set of its own, manifest last: summary.json and
    report.html to read directly, the GX Data Docs folder as one archive that opens offline.
    Returns the stored summary.json's key."""
    report_id = new_backup_set_id(started_at)
    files = [report_dir / "summary.json", report_dir / "report.html"]
    docs = report_dir / "data_docs"
    if docs.is_dir():
        archive = shutil.make_archive(str(report_dir / "data-docs"), "gztar", root_dir=docs)
        files.append(Path(archive))
    payloads: list[Payload] = []
    for path in files:
        if not path.is_file():
            continue
        with path.open("rb") as source:
            stored = store.put(key_for(cluster, BackupKind.RESTORE_TEST, report_id, path.name), source)
        payloads.append(Payload(path.name, stored.size_bytes, stored.sha256, "report"))
    publish_set(
        store,
        kind=BackupKind.RESTORE_TEST,
        cluster=cluster,
        backup_set_id=report_id,
        started_at=started_at,
        finished_at=finished_at,
        payloads=payloads,
        extra=manifest_extra(report),
    )
    return key_for(cluster, BackupKind.RESTORE_TEST, report_id, "summary.json")


def check_and_report(
    plan: RestoreTestPlan,
    copy: RestoredCopy,
    *,
    store: Store,
    cluster: ClusterPolicy,
    restore_test: RestoreTestPolicy,
    staging: StagingPolicy,
    rto_minutes: int,
    announce: Announce,
) -> RestoreTestReport:
    """Check ``copy`` against the planned set's baselines, store the report as a restore-test set,
    announce it, then fail on a failed check or an RTO over target. RTO runs from
    ``copy.started_at`` to the end of the checks.

    :raises QualityCheckFailed: a check failed, or the restore took longer than the RTO target.
    """
    from hms_dr.quality import check_restored_database
    from hms_dr.quality.report import write_report_html

    backup_set = find_set(store, cluster.name, BackupKind.LOGICAL, plan.backup_set_id)
    report_dir = work_folder(staging.dir, WorkPurpose.RESTORE_TEST, plan.scratch_database) / f"report-{copy.part.value}"
    checks_started = datetime.now(UTC)
    try:
        outcome = check_restored_database(
            copy.dsn,
            backup_set.manifest.baselines,
            report_dir=report_dir,
            backup_set_id=backup_set.backup_set_id,
            smoke_queries=restore_test.smoke_queries,
            content_taken=copy.content,
        )
        finished = datetime.now(UTC)
        rto = rto_verdict(copy.started_at, finished, rto_minutes)
        report = build_report(
            copy,
            outcome,
            backup_set_id=backup_set.backup_set_id,
            backup_manifest=store.describe(backup_set.manifest_key),
            rto=rto,
            checks_s=(finished - checks_started).total_seconds(),
        )
        summary = report.to_xcom()
        (report_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        write_report_html(summary, report_dir)  # again, now with the RTO and every step's duration
        report_key = store_report(store, cluster.name, report_dir, checks_started, finished, report)
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            report_dir.parent.rmdir()  # the run's workdir, once no other report is being written there
    log.info("restore-test report (%s): %s", report.restored_what, store.describe(report_key))
    log.info("RTO %.1f s (target %d s); steps: %s", rto.seconds, rto.target_s, report.steps_s)
    announce(report, store.describe(report_key))
    failure = report_failure(report, rto)
    if failure:
        raise failure
    return report
