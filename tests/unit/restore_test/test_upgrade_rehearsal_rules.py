"""The upgrade rehearsal's rules without Airflow or a server: refused in one line (no rehearsal
server in the policy, its Connection missing, its major not newer than the set's, a mode with the
physical drill), planned with both versions, and named in the plan, the report and its manifest."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from restore_test_sets import CLUSTER, DAILY_ID

from hms_dr.errors import PreflightFailed, RequestRefused
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import DEFAULT_POLICY_PATH, RestoreTestMode, RestoreTestPolicy, load_policy, parse_policy
from hms_dr.quality.report import write_report_html
from hms_dr.restore_test.plan import (
    plan_upgrade_rehearsal,
    read_request,
    rehearsal_connection_id,
    rehearsal_server,
)
from hms_dr.restore_test.records import RestoreTestPart, RestoreTestPlan, RestoreTestReport, UpgradeRehearsal
from hms_dr.restore_test.report import RestoredCopy, build_report, manifest_extra, store_report
from hms_dr.restore_test.rto import rto_verdict
from hms_dr.status import collect_status, render_rto_chart
from hms_dr.store import open_store

REHEARSAL = UpgradeRehearsal("hms_upgrade_rehearsal", "15.18", "18.6")
START = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def rehearsal_request(mode: str) -> Any:
    return read_request(
        {"mode": mode, "upgrade_rehearsal": True}, triggered_set_id=None, default_mode=RestoreTestMode.BOTH
    )


@pytest.mark.parametrize("mode", ["physical", "both"])
def test_a_rehearsal_with_the_physical_drill_is_refused_in_one_line(mode: str) -> None:
    with pytest.raises(RequestRefused) as refused:
        rehearsal_request(mode)
    assert str(refused.value) == (
        f"upgrade_rehearsal restores the daily set with pg_restore, mode {mode} has the physical drill, "
        "which cannot cross PostgreSQL majors: ask for mode logical"
    )


def test_a_logical_rehearsal_is_read_and_an_ordinary_run_is_none() -> None:
    assert rehearsal_request("logical").upgrade_rehearsal is True
    ordinary = read_request({}, triggered_set_id=None, default_mode=RestoreTestMode.BOTH)
    assert ordinary.upgrade_rehearsal is False and ordinary.mode is RestoreTestMode.BOTH


def test_a_rehearsal_param_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(RequestRefused, match="upgrade_rehearsal must be true or false, got 'yes'"):
        read_request({"mode": "logical", "upgrade_rehearsal": "yes"}, triggered_set_id=None, default_mode=None)  # type: ignore[arg-type]


def test_without_a_rehearsal_server_in_the_policy_a_rehearsal_is_refused() -> None:
    with pytest.raises(RequestRefused) as refused:
        rehearsal_connection_id(RestoreTestPolicy(on_every_backup=False, restore_jobs=2))
    assert str(refused.value) == (
        "upgrade_rehearsal needs a restore server of a newer PostgreSQL major: "
        "the policy's restore_test.upgrade_rehearsal_connection_id is not set"
    )
    named = RestoreTestPolicy(False, 2, upgrade_rehearsal_connection_id="hms_upgrade_rehearsal")
    assert rehearsal_connection_id(named) == "hms_upgrade_rehearsal"


def test_a_missing_rehearsal_connection_refuses_the_request_naming_it() -> None:
    def missing(conn_id: str) -> ConnectionInfo:
        raise PreflightFailed(f"Airflow connection {conn_id!r} is not defined: not found")

    with pytest.raises(RequestRefused) as refused:
        rehearsal_server("hms_upgrade_rehearsal", missing)
    assert str(refused.value) == (
        "upgrade_rehearsal: Airflow connection 'hms_upgrade_rehearsal' is not defined: not found"
    )
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("target", "shown"), [("15.18", "15.18"), ("15.2 (Debian 15.2-1)", "15.2"), ("14.12", "14.12")]
)
def test_a_rehearsal_server_not_of_a_newer_major_is_refused_naming_both_versions(target: str, shown: str) -> None:
    with pytest.raises(RequestRefused) as refused:
        plan_upgrade_rehearsal(
            "hms_upgrade_rehearsal",
            backup_set_id=DAILY_ID,
            set_version="15.18 (Debian 15.18-0+deb12u1)",
            target_version=target,
        )
    assert str(refused.value) == (
        f"upgrade_rehearsal: the rehearsal server 'hms_upgrade_rehearsal' runs PostgreSQL {shown}, "
        f"not a newer major than PostgreSQL 15.18 that set {DAILY_ID} was taken from"
    )


def test_a_set_that_records_no_server_version_cannot_be_rehearsed() -> None:
    with pytest.raises(RequestRefused, match=f"set {DAILY_ID} records no server.version"):
        plan_upgrade_rehearsal("x", backup_set_id=DAILY_ID, set_version=None, target_version="18.6")


def test_a_newer_major_is_planned_with_both_versions() -> None:
    planned = plan_upgrade_rehearsal(
        "hms_upgrade_rehearsal", backup_set_id=DAILY_ID, set_version="15.18 (Debian)", target_version="18.6"
    )
    assert planned == REHEARSAL
    assert planned.describe() == "PostgreSQL 15.18 → 18.6"


def test_the_plan_carries_the_rehearsal_across_xcom_and_an_ordinary_plan_has_no_key() -> None:
    plan = RestoreTestPlan(DAILY_ID, "k", "hms_restore_test_x", 2, False, RestoreTestMode.LOGICAL)
    assert "upgrade_rehearsal" not in plan.to_xcom()
    rehearsing = RestoreTestPlan(
        DAILY_ID, "k", "hms_restore_test_x", 2, False, RestoreTestMode.LOGICAL, upgrade_rehearsal=REHEARSAL
    )
    data = rehearsing.to_xcom()
    assert data["upgrade_rehearsal"] == {
        "connection_id": "hms_upgrade_rehearsal",
        "from_version": "15.18",
        "to_version": "18.6",
    }
    assert RestoreTestPlan.from_xcom(data) == rehearsing


def rehearsal_report() -> RestoreTestReport:
    copy_ = RestoredCopy(
        RestoreTestPart.LOGICAL,
        "host=127.0.0.1 dbname=x",
        START,
        {"pg_restore": 3.0},
        scratch_database="hms_restore_test_x",
        upgrade_rehearsal=REHEARSAL.describe(),
    )
    return build_report(
        copy_,
        {"passed": True, "checks": [], "failed": []},
        backup_set_id=DAILY_ID,
        backup_manifest="m",
        rto=rto_verdict(START, START + timedelta(minutes=1), 240),
        checks_s=1.0,
    )


def test_the_report_its_manifest_and_its_page_say_upgrade_rehearsal_with_both_versions(tmp_path: Path) -> None:
    report = rehearsal_report()
    summary = report.to_xcom()
    assert summary["upgrade_rehearsal"] == "PostgreSQL 15.18 → 18.6"
    assert RestoreTestReport.from_xcom(summary) == report
    assert report.restored_what == f"logical restore of {DAILY_ID} (upgrade rehearsal: PostgreSQL 15.18 → 18.6)"
    assert manifest_extra(report)["upgrade_rehearsal"] == "PostgreSQL 15.18 → 18.6"
    page = write_report_html(summary, tmp_path).read_text(encoding="utf-8")
    assert "upgrade rehearsal: PostgreSQL 15.18 → 18.6" in page


def test_the_policy_key_is_optional_and_the_committed_policies_set_none() -> None:
    assert load_policy(DEFAULT_POLICY_PATH).restore_test.upgrade_rehearsal_connection_id is None
    compose = DEFAULT_POLICY_PATH.parents[1] / "deploy" / "policy.compose.yaml"
    assert yaml.safe_load(compose.read_text())["restore_test"]["upgrade_rehearsal_connection_id"] is None
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    del data["restore_test"]["upgrade_rehearsal_connection_id"]
    assert parse_policy(data).restore_test.upgrade_rehearsal_connection_id is None
    data["restore_test"]["upgrade_rehearsal_connection_id"] = " hms_pg18_rehearsal "
    assert parse_policy(data).restore_test.upgrade_rehearsal_connection_id == "hms_pg18_rehearsal"


def test_a_stored_rehearsal_shows_on_the_status_pages_rto_trend(tmp_path: Path) -> None:
    report = rehearsal_report()
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "summary.json").write_text(json.dumps(report.to_xcom()))
    (report_dir / "report.html").write_text("<html>report</html>")
    (tmp_path / "nas").mkdir()
    store = open_store((tmp_path / "nas").as_uri())
    store_report(store, CLUSTER, report_dir, START, START + timedelta(minutes=1), report)
    (point,) = collect_status(store, None, CLUSTER, START + timedelta(days=1))["rto_trend"]
    assert point["mode"] == "logical" and point["upgrade_rehearsal"] == "PostgreSQL 15.18 → 18.6"
    assert "logical (upgrade rehearsal: PostgreSQL 15.18 → 18.6), passed" in render_rto_chart([point])
