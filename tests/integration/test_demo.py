"""`make demo` proves the backup it makes: after the daily backup it runs hms_restore_test through
Airflow on the new set and prints the verdict, the RTO against the target, the checks passed and
where the report is, every figure the one the restore test stored (and returned to Airflow).
A restore that misses its baselines is printed as FAILED with the checks that failed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from hms_dr.catalog import BackupSet, find_set, key_for, list_catalog
from hms_dr.manifest import MANIFEST_NAME, BackupKind, dump_manifest
from hms_dr.policy import load_policy

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

REPO_ROOT = Path(__file__).resolve().parents[2]
# What `make` exports for the sandbox's own commands: the engine (plugins/) and the sandbox (sandbox/).
SANDBOX_PYTHONPATH = os.pathsep.join(str(REPO_ROOT / root) for root in ("plugins", "sandbox"))
CLUSTER = "hms-primary"
UNITS_S = {"s": 1, "min": 60, "h": 3600}


def reports_of(store: Any, backup_set_id: str) -> list[BackupSet]:
    """The restore-test reports stored for one daily set."""
    return [
        s
        for s in list_catalog(store, CLUSTER, BackupKind.RESTORE_TEST).sets
        if (s.manifest.body.get("tested_set") or {}).get("backup_set_id") == backup_set_id
    ]


def stored_summary(store: Any, report: BackupSet) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(
        store.get_bytes(key_for(CLUSTER, BackupKind.RESTORE_TEST, report.backup_set_id, "summary.json"))
    )
    return summary


@pytest.fixture(scope="module")
def demo_run(sandbox: Any, dag_runner: Any) -> subprocess.CompletedProcess[str]:
    """`python -m hms_sandbox.demo` as `make demo` runs it: airflow.env exported, HMS_DR_SANDBOX set."""
    env = {**dag_runner.env, "HMS_DR_SANDBOX": str(sandbox.state_dir), "PYTHONPATH": SANDBOX_PYTHONPATH}
    return subprocess.run(
        [sys.executable, "-m", "hms_sandbox.demo"], env=env, capture_output=True, text=True, timeout=900
    )


def test_the_demo_prints_the_restore_tests_verdict_rto_checks_and_report_from_the_run(
    demo_run: subprocess.CompletedProcess[str], dag_runner: Any, primary_store: Any
) -> None:
    out = demo_run.stdout
    assert demo_run.returncode == 0, out[-6000:] + demo_run.stderr[-3000:]
    made = re.search(r"^Backup set (\d{8}T\d{6}Z) complete in", out, re.MULTILINE)
    assert made, out
    backup_set_id = made.group(1)

    # The restore test ran through Airflow on that very set and stored one report.
    reports = reports_of(primary_store, backup_set_id)
    assert len(reports) == 1, [r.backup_set_id for r in reports]
    summary = stored_summary(primary_store, reports[0])
    returned = dag_runner.returned(
        "hms_restore_test", dag_runner._latest_run_id("hms_restore_test"), "check_against_baselines"
    )
    assert (returned["backup_set_id"], returned["checks"], returned["rto_s"]) == (
        backup_set_id,
        summary["checks"],
        summary["rto_s"],
    )
    assert summary["passed"] is True and summary["mode"] == "logical"

    assert f"Restore test of {backup_set_id}: PASSED" in out
    checks = re.search(r"^  checks\s+(\d+) of (\d+) passed.*$", out, re.MULTILINE)
    assert checks, out
    assert int(checks.group(2)) == len(summary["checks"]) > 20
    assert int(checks.group(1)) == sum(1 for c in summary["checks"] if c["passed"]) == len(summary["checks"])
    rto = re.search(r"^  RTO\s+([\d.]+) (s|min|h) .*; target ([\d.]+) (s|min|h): within target", out, re.MULTILINE)
    assert rto, out
    assert float(rto.group(1)) * UNITS_S[rto.group(2)] == pytest.approx(
        summary["rto_s"], abs=0.05 * UNITS_S[rto.group(2)]
    )
    assert float(rto.group(3)) * UNITS_S[rto.group(4)] == pytest.approx(
        summary["rto_target_s"], abs=0.05 * UNITS_S[rto.group(4)]
    )
    assert summary["rto_target_s"] == load_policy(Path(dag_runner.env["HMS_DR_POLICY"])).rto_minutes * 60

    report_key = key_for(CLUSTER, BackupKind.RESTORE_TEST, reports[0].backup_set_id, "report.html")
    assert f"  report   {primary_store.describe(report_key)} " in out
    local = re.search(r"^  local\s+(\S+)$", out, re.MULTILINE)
    assert local, out
    local_report = Path(local.group(1))
    assert local_report.read_bytes() == primary_store.get_bytes(report_key)
    # Its links (each check's Great Expectations page, the Data Docs index) open from the local copy.
    links = re.findall(r'href="([^"#:]+)"', local_report.read_text())
    assert "data_docs/index.html" in links
    assert [link for link in links if not (local_report.parent / unquote(link)).is_file()] == []
    # The kinds of checks, counted from the stored summary too.
    kinds = Counter(c["check"] for c in summary["checks"])
    assert checks.group(0).endswith("(" + ", ".join(f"{n} {kind}" for kind, n in kinds.items()) + ")")


def test_a_restore_that_misses_its_baselines_is_printed_failed_with_the_failed_checks(
    demo_run: subprocess.CompletedProcess[str], sandbox: Any, dag_runner: Any, primary_store: Any, tmp_path: Path
) -> None:
    from hms_sandbox import demo

    made = re.search(r"^Backup set (\d{8}T\d{6}Z) complete in", demo_run.stdout, re.MULTILINE)
    assert made, demo_run.stdout + demo_run.stderr
    good = find_set(primary_store, CLUSTER, BackupKind.LOGICAL, made.group(1))
    # The demo's set under an old id (never "latest") and baselines claiming 3 more billing rows:
    # as if rows had gone missing from the restore.
    set_id = "20200102T000001Z"
    body = json.loads(json.dumps(good.manifest.body))
    body["backup_set_id"] = set_id
    body["baselines"]["tables"]["public.billing"]["rows"] += 3
    for payload in body["payloads"]:
        data = primary_store.get_bytes(key_for(CLUSTER, BackupKind.LOGICAL, good.backup_set_id, payload["name"]))
        primary_store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, set_id, payload["name"]), data)
    primary_store.put_bytes(key_for(CLUSTER, BackupKind.LOGICAL, set_id, MANIFEST_NAME), dump_manifest(body))

    policy = load_policy(Path(dag_runner.env["HMS_DR_POLICY"]))
    verdict = demo.prove_restore(
        primary_store, policy, set_id, log_dir=tmp_path, reports_dir=tmp_path / "reports", env=dag_runner.env
    )
    lines = demo.verdict_lines(verdict)

    assert verdict.passed is False and verdict.airflow_exit != 0
    reports = reports_of(primary_store, set_id)
    assert len(reports) == 1
    summary = stored_summary(primary_store, reports[0])
    assert summary["passed"] is False
    assert lines[0].startswith(f"Restore test of {set_id}: FAILED"), lines
    total, failed = len(summary["checks"]), len(summary["failed"])
    assert failed >= 1
    assert any(line.startswith(f"  checks   {total - failed} of {total} passed") for line in lines), lines
    assert any(line.startswith("  failed") and "public.billing" in line for line in lines), lines
    report_key = key_for(CLUSTER, BackupKind.RESTORE_TEST, reports[0].backup_set_id, "report.html")
    assert f"  report   {primary_store.describe(report_key)} (summary.json and the Data Docs beside it)" in lines
    assert verdict.local_report is not None and verdict.local_report.read_bytes() == primary_store.get_bytes(report_key)
