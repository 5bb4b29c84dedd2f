"""The restore-test report without Airflow or a database: what it says of a logical restore and of
a drill (the keys summary.json has always had, in order), when it passes, what fails the run, and
the report stored as a restore-test set as the status page reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from restore_test_sets import CLUSTER, DAILY_ID

from hms_dr.catalog import key_for, list_catalog
from hms_dr.manifest import BackupKind
from hms_dr.restore_test.records import RestoreTestPart, RestoreTestReport
from hms_dr.restore_test.report import RestoredCopy, build_report, manifest_extra, report_failure, store_report
from hms_dr.restore_test.rto import rto_verdict
from hms_dr.status import collect_status
from hms_dr.store import open_store

START = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
MANIFEST = f"file:///nas/{CLUSTER}/logical/{DAILY_ID}/manifest.json"
ROWS = [
    {
        "check": "row_count",
        "target": "public.patients",
        "passed": True,
        "expected": 500,
        "observed": 500,
        "message": "",
        "data_docs_page": None,
    },
    {
        "check": "row_count",
        "target": "public.payments",
        "passed": False,
        "expected": 900,
        "observed": 899,
        "message": "public.payments has 899 rows, baseline 900",
        "data_docs_page": None,
    },
]
PASSED = {"passed": True, "checks": ROWS[:1], "failed": []}
FAILED = {"passed": False, "checks": ROWS, "failed": ["public.payments has 899 rows, baseline 900"]}

LOGICAL_COPY = RestoredCopy(
    RestoreTestPart.LOGICAL,
    "host=127.0.0.1 password=secret dbname=x",
    START,
    {"download_and_verify": 1.5, "decrypt": 0.25, "pg_restore": 3.0},
    scratch_database="hms_restore_test_20261111t020000z_a1b2c3",
)
PHYSICAL_COPY = RestoredCopy(
    RestoreTestPart.PHYSICAL,
    "host=127.0.0.1 password=secret dbname=hms",
    START,
    {"restore_base_backup": 20.0, "replay_and_promote": 7.5},
    base_backup_set_id="20261108T030000Z",
    target_lsn="0/40000500",
    timeline=2,
    recovery_end_lsn="0/40000600",
)


def report(copy: RestoredCopy, outcome: dict[str, Any], took: timedelta, rto_minutes: int = 240) -> RestoreTestReport:
    return build_report(
        copy,
        outcome,
        backup_set_id=DAILY_ID,
        backup_manifest=MANIFEST,
        rto=rto_verdict(START, START + took, rto_minutes),
        checks_s=4.1234,
    )


def test_a_logical_report_has_the_keys_summary_json_always_had() -> None:
    summary = report(LOGICAL_COPY, PASSED, timedelta(seconds=12.34567)).to_xcom()
    assert summary == {
        "backup_set_id": DAILY_ID,
        "backup_manifest": MANIFEST,
        "mode": "logical",
        "scratch_database": "hms_restore_test_20261111t020000z_a1b2c3",
        "passed": True,
        "checks_passed": True,
        "checks": ROWS[:1],
        "failed": [],
        "rto_s": 12.346,
        "rto_target_s": 14400,
        "steps_s": {"download_and_verify": 1.5, "decrypt": 0.25, "pg_restore": 3.0, "quality_checks": 4.123},
    }
    assert list(summary) == [
        "backup_set_id",
        "backup_manifest",
        "mode",
        "scratch_database",
        "passed",
        "checks_passed",
        "checks",
        "failed",
        "rto_s",
        "rto_target_s",
        "steps_s",
    ]


def test_a_drill_report_names_the_base_backup_the_lsn_and_the_timeline() -> None:
    summary = report(PHYSICAL_COPY, PASSED, timedelta(minutes=1)).to_xcom()
    assert list(summary) == [
        "backup_set_id",
        "backup_manifest",
        "mode",
        "base_backup_set_id",
        "target_lsn",
        "timeline",
        "recovery_end_lsn",
        "passed",
        "checks_passed",
        "checks",
        "failed",
        "rto_s",
        "rto_target_s",
        "steps_s",
    ]
    assert (
        summary["mode"],
        summary["base_backup_set_id"],
        summary["target_lsn"],
        summary["timeline"],
        summary["recovery_end_lsn"],
    ) == ("physical", "20261108T030000Z", "0/40000500", 2, "0/40000600")
    assert summary["steps_s"] == {"restore_base_backup": 20.0, "replay_and_promote": 7.5, "quality_checks": 4.123}


def test_a_drill_report_keeps_its_keys_when_recovery_named_no_end_lsn() -> None:
    copy = RestoredCopy(RestoreTestPart.PHYSICAL, "", START, {}, base_backup_set_id="b", target_lsn="0/1", timeline=2)
    assert report(copy, PASSED, timedelta(minutes=1)).to_xcom()["recovery_end_lsn"] is None


@pytest.mark.parametrize("copy", [LOGICAL_COPY, PHYSICAL_COPY], ids=["logical", "physical"])
def test_the_report_crosses_xcom_and_back_unchanged(copy: RestoredCopy) -> None:
    built = report(copy, FAILED, timedelta(hours=5))
    assert RestoreTestReport.from_xcom(json.loads(json.dumps(built.to_xcom()))) == built


def test_the_dsn_and_its_password_never_show_in_a_copy_or_its_report() -> None:
    assert "secret" not in repr(LOGICAL_COPY)
    assert "secret" not in json.dumps(report(LOGICAL_COPY, PASSED, timedelta(minutes=1)).to_xcom())


def test_a_report_passes_only_with_every_check_passed_and_the_rto_within_target() -> None:
    assert report(LOGICAL_COPY, PASSED, timedelta(hours=4)).passed is True
    over = report(LOGICAL_COPY, PASSED, timedelta(hours=4, seconds=1))
    assert (over.passed, over.checks_passed, over.rto_s) == (False, True, 14401.0)
    differs = report(LOGICAL_COPY, FAILED, timedelta(minutes=1))
    assert (differs.passed, differs.checks_passed, differs.failed) == (
        False,
        False,
        ["public.payments has 899 rows, baseline 900"],
    )


def test_a_failed_check_fails_the_run_before_an_rto_over_target() -> None:
    rto_over = rto_verdict(START, START + timedelta(hours=5), 240)
    both = report(LOGICAL_COPY, FAILED, timedelta(hours=5))
    failure = report_failure(both, rto_over)
    assert failure is not None and failure.message == (
        f"logical restore of {DAILY_ID} differs from its baselines: public.payments has 899 rows, baseline 900"
    )
    slow = report(PHYSICAL_COPY, PASSED, timedelta(hours=5))
    failure = report_failure(slow, rto_over)
    assert (
        failure is not None
        and failure.message == f"physical restore of {DAILY_ID} took 300.0 min, over the RTO target of 240 min"
    )
    assert report_failure(report(LOGICAL_COPY, PASSED, timedelta(minutes=1)), rto_verdict(START, START, 240)) is None


def test_the_stored_reports_manifest_says_what_the_status_page_and_freshness_read(tmp_path: Path) -> None:
    assert manifest_extra(report(LOGICAL_COPY, PASSED, timedelta(minutes=2))) == {
        "tested_set": {"kind": "logical", "backup_set_id": DAILY_ID},
        "mode": "logical",
        "passed": True,
        "rto_s": 120.0,
        "rto_target_s": 14400,
    }
    (tmp_path / "nas").mkdir()
    store = open_store((tmp_path / "nas").as_uri())
    stored_keys = []
    for copy, took in ((LOGICAL_COPY, timedelta(minutes=2)), (PHYSICAL_COPY, timedelta(minutes=3))):
        built = report(copy, PASSED, took)
        report_dir = tmp_path / f"report-{copy.part.value}"
        (report_dir / "data_docs").mkdir(parents=True)
        (report_dir / "data_docs" / "index.html").write_text("<html></html>")
        (report_dir / "summary.json").write_text(json.dumps(built.to_xcom(), indent=2) + "\n")
        (report_dir / "report.html").write_text("<html>report</html>")
        finished = START + took + (timedelta(hours=1) if copy.part is RestoreTestPart.PHYSICAL else timedelta(0))
        stored_keys.append(store_report(store, CLUSTER, report_dir, finished - timedelta(seconds=5), finished, built))

    reports = list_catalog(store, CLUSTER, BackupKind.RESTORE_TEST).sets
    assert [r.manifest.body["mode"] for r in reports] == ["logical", "physical"]
    assert stored_keys == [key_for(CLUSTER, BackupKind.RESTORE_TEST, r.backup_set_id, "summary.json") for r in reports]
    assert {p.name for p in reports[0].manifest.payloads} == {"summary.json", "report.html", "data-docs.tar.gz"}
    assert "base_backup_set_id" not in reports[0].manifest.body
    assert reports[1].manifest.body["base_backup_set_id"] == "20261108T030000Z"
    assert json.loads(store.get_bytes(stored_keys[0]))["scratch_database"] == "hms_restore_test_20261111t020000z_a1b2c3"

    status = collect_status(store, None, CLUSTER, START + timedelta(days=1))
    assert [(p["mode"], p["rto_s"], p["rto_target_s"], p["passed"]) for p in status["rto_trend"]] == [
        ("logical", 120.0, 14400, True),
        ("physical", 180.0, 14400, True),
    ]
