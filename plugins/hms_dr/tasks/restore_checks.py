"""What the logical restore test and the physical drill share once a database is restored: the
checks against the daily set's baselines, the report stored as a restore-test set, the RTO
verdict, and which part of a run a task belongs to. Both tasks modules import it; neither imports
the other's checks (they used to, in a cycle)."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowSkipException

from hms_dr.catalog import find_set, key_for
from hms_dr.errors import QualityCheckFailed
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.policy import RestoreTestMode, load_policy
from hms_dr.publish import publish_set
from hms_dr.scratch.workdir import WorkPurpose, work_folder
from hms_dr.tasks.assets import RESTORE_TESTS
from hms_dr.tasks.connections import open_policy_store

log = logging.getLogger(__name__)


def skip_unless(plan: dict[str, Any], part: str) -> None:
    """Skip a task of the part (logical or physical) that this run's mode leaves out."""
    if not getattr(RestoreTestMode(plan.get("mode", "logical")), part):
        raise AirflowSkipException(f"mode {plan.get('mode')}: no {part} restore in this run")


def check_and_report(
    plan: dict[str, Any], dsn: str, *, started_at: str, steps_s: dict[str, float], what: dict[str, Any]
) -> dict[str, Any]:
    """Check the restored database at ``dsn`` against the planned set's baselines, store the
    report as a restore-test set, announce it, then fail on a failed check or an RTO over target.
    RTO runs from ``started_at`` (the fetch's start) to the end of the checks."""
    from hms_dr.quality import check_restored_database
    from hms_dr.quality.report import write_report_html

    policy = load_policy()
    store = open_policy_store(policy)
    backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, plan["backup_set_id"])
    report_dir = work_folder(policy.staging.dir, WorkPurpose.RESTORE_TEST, plan["scratch_database"]) / f"report-{what['mode']}"
    checks_started = datetime.now(timezone.utc)
    try:
        outcome = check_restored_database(dsn, backup_set.manifest.baselines, report_dir=report_dir, backup_set_id=backup_set.backup_set_id,
                                          smoke_queries=policy.restore_test.smoke_queries)
        finished = datetime.now(timezone.utc)
        rto_s = (finished - datetime.fromisoformat(started_at)).total_seconds()
        summary = {
            "backup_set_id": backup_set.backup_set_id,
            "backup_manifest": store.describe(backup_set.manifest_key),
            **what,
            "passed": outcome["passed"] and rto_s <= policy.rto_minutes * 60,
            "checks_passed": outcome["passed"],
            "checks": outcome["checks"],
            "failed": outcome["failed"],
            "rto_s": round(rto_s, 3),
            "rto_target_s": policy.rto_minutes * 60,
            "steps_s": {**steps_s, "quality_checks": round((finished - checks_started).total_seconds(), 3)},
        }
        (report_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        write_report_html(summary, report_dir)  # again, now with the RTO and every step's duration
        report_key = _store_report(store, policy.cluster.name, report_dir, checks_started, finished, summary)
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            report_dir.parent.rmdir()  # the task's workdir, once no other report is being written there
    restored_what = f"{what['mode']} restore of {backup_set.backup_set_id}"
    log.info("restore-test report (%s): %s", restored_what, store.describe(report_key))
    log.info("RTO %.1f s (target %d s); steps: %s", rto_s, policy.rto_minutes * 60, summary["steps_s"])
    get_current_context()["outlet_events"][RESTORE_TESTS].extra = {**summary, "report": store.describe(report_key)}
    if not outcome["passed"]:
        raise QualityCheckFailed(f"{restored_what} differs from its baselines: {'; '.join(outcome['failed'][:5])}")
    if rto_s > policy.rto_minutes * 60:
        raise QualityCheckFailed(f"{restored_what} took {rto_s / 60:.1f} min, over the RTO target of {policy.rto_minutes} min")
    return summary


def _store_report(
    store: Any, cluster: str, report_dir: Path, started_at: datetime, finished_at: datetime, summary: dict[str, Any]
) -> str:
    """Upload the report as a restore-test set of its own, manifest last: summary.json and
    report.html to read directly, the GX Data Docs folder as one archive that opens offline."""
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
        store, kind=BackupKind.RESTORE_TEST, cluster=cluster, backup_set_id=report_id,
        started_at=started_at, finished_at=finished_at, payloads=payloads,
        extra={
            "tested_set": {"kind": BackupKind.LOGICAL.value, "backup_set_id": summary["backup_set_id"]},
            "mode": summary["mode"],
            **({"base_backup_set_id": summary["base_backup_set_id"]} if "base_backup_set_id" in summary else {}),
            "passed": summary["passed"],
            "rto_s": summary["rto_s"],
            "rto_target_s": summary["rto_target_s"],
        },
    )
    return key_for(cluster, BackupKind.RESTORE_TEST, report_id, "summary.json")
