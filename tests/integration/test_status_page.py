"""The backup-status page, served by the plugin in a real Airflow API server on the sandbox:
refused without credentials, and in headless Chromium (logged in with the UI's ``_token``
cookie) it shows the sandbox's newest logical set, the restore test that tested it and the RTO
chart. The screenshot is kept in test-artifacts/status-page.png.
"""

from __future__ import annotations

import json
import secrets
import shutil
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hms_dr.audit import AuditRecord, write_audit_record
from hms_dr.catalog import find_set
from hms_dr.manifest import BackupKind

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "test-artifacts" / "status-page.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def http(method: str, url: str, payload: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def tested_set(dag_runner: Any, primary_store: Any) -> Any:
    """A fresh logical set, a passed logical restore test of it, and one DR run in the audit trail."""
    outcome = dag_runner.run("hms_daily_logical_backup")
    assert outcome.state == "success", outcome.output[-4000:]
    backup_set = find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")
    outcome = dag_runner.run("hms_restore_test", conf={"mode": "logical", "backup_id": backup_set.backup_set_id})
    assert outcome.state == "success", outcome.output[-4000:]
    now = datetime.now(UTC)
    write_audit_record(
        primary_store,
        CLUSTER,
        AuditRecord(
            dag_id="hms_dr_restore",
            run_id="status-page-test",
            triggered_by="admin",
            started_at=now,
            reason="status page test",
            params={"tables": ["public.patient"]},
            event="succeeded",
            outcome="drill",
            recorded_at=now,
        ),
    )
    return backup_set


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "install the Debian packages chromium and chromium-driver (.ci/run does)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1400",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_the_status_page_is_refused_without_login_and_shows_the_sets_and_the_rto_chart(
    scheduled_airflow: Any, tested_set: Any
) -> None:
    from selenium.webdriver.common.by import By

    password = secrets.token_urlsafe(12)
    airflow = scheduled_airflow("status-page", ui_users={"admin": password})
    base = f"http://127.0.0.1:{airflow.port}"

    for path in ("/hms-status/", "/hms-status/status.json"):
        status, body = http("GET", base + path)
        assert status == 401, (path, status, body[:300])
        assert tested_set.backup_set_id.encode() not in body
    status, _ = http("GET", base + "/hms-status/", headers={"Authorization": "Bearer not-a-token"})
    assert status in (401, 403)
    status, _ = http("GET", base + "/hms-status/", headers={"Cookie": "_token=not-a-token"})
    assert status in (401, 403)

    status, body = http("POST", base + "/auth/token", {"username": "admin", "password": password})
    assert status == 201, body
    token = json.loads(body)["access_token"]
    status, body = http("GET", base + "/hms-status/status.json", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body[:2000] + airflow.log_tail("api-server").encode()
    data = json.loads(body)
    logical = next(row for row in data["kinds"] if row["kind"] == "logical")
    assert logical["backup_set_id"] == tested_set.backup_set_id
    assert logical["verified"] is True and logical["restore_tested"] is True
    assert data["rto_trend"] and data["rto_trend"][-1]["passed"] is True
    assert any(run["run_id"] == "status-page-test" for run in data["dr_runs"])

    status, body = http("GET", base + "/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body[:1000]
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "hms_status")
    assert [view["href"] for view in plugin["external_views"]] == ["/hms-status/"]

    driver = browser()
    try:
        driver.get(base + "/api/v2/monitor/health")  # a page of the same origin, to set its cookie on
        driver.add_cookie({"name": "_token", "value": token, "path": "/"})
        driver.get(base + "/hms-status/")
        assert "HMS backup status" in driver.title, driver.page_source[:2000]
        rows = driver.find_elements(By.CSS_SELECTOR, "#sets td.set-id")
        assert tested_set.backup_set_id in [row.text for row in rows]
        chart = driver.find_element(By.ID, "rto-chart")
        assert len(chart.find_elements(By.CSS_SELECTOR, "circle")) >= 1
        assert driver.find_element(By.CSS_SELECTOR, 'a[href="/dags/hms_dr_restore"]')
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
    assert SCREENSHOT.stat().st_size > 10_000
