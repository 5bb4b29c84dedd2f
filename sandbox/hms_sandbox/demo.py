"""`make demo`: run the daily logical backup through Airflow on the sandbox, show the set, then
prove it restores: run the restore test through Airflow on that set and show its verdict.

Runs `airflow dags test hms_daily_logical_backup` (the real DAG from dags/, every task in order)
against the sandbox started by `make sandbox`, reads the new set back from the store and prints
its id, location, sizes and baselines. Then runs `airflow dags test hms_restore_test` on that set
(mode logical: the demo makes no base backup for the physical drill) and prints what the restore
test stored: passed or failed, its RTO against the policy's target, how many checks passed, and
where its report is (in the store, and a local copy of report.html with its Data Docs). Exits
non-zero if either run failed or left nothing in the store.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hms_dr.baseline import summarize_baselines
from hms_dr.catalog import BackupSet, find_set, key_for, list_catalog
from hms_dr.errors import HmsDrError
from hms_dr.files import write_file_atomically
from hms_dr.manifest import BackupKind
from hms_dr.policy import Policy, load_policy
from hms_dr.store import Store, open_store
from hms_dr.units import human_bytes
from hms_sandbox.airflow_env import airflow_process_env
from hms_sandbox.state import REPO_ROOT, load_sandbox

DAG_ID = "hms_daily_logical_backup"
RESTORE_TEST_DAG_ID = "hms_restore_test"
# The demo stores no base backup, so the restore test runs its logical part only.
RESTORE_TEST_MODE = "logical"
DATA_DOCS_ARCHIVE = "data-docs.tar.gz"  # what hms_dr.tasks.restore_test stores beside report.html
# A structlog console line of the engine: "<ts> [info     ] <message> [hms_dr.<module>] loc=..."
ENGINE_LOG_LINE = re.compile(r"\[(?P<level>info|warning|error)\s*\] (?P<message>.*?) \[hms_dr[\w.]*\]")


def airflow(*args: str, log_file: Path | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the airflow CLI of this venv with the sandbox environment (``env``, default: this
    process's, which `make` exported from airflow.env), the product alone on its PYTHONPATH."""
    executable = str(Path(sys.executable).with_name("airflow"))
    run_env = airflow_process_env(os.environ if env is None else env, REPO_ROOT / "plugins")
    if log_file is None:
        return subprocess.run(
            [executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=run_env
        ).returncode
    with log_file.open("w") as out:
        return subprocess.run([executable, *args], stdout=out, stderr=subprocess.STDOUT, env=run_env).returncode


def show_engine_steps(log_file: Path, *, hide: str | None = None) -> None:
    """The engine's own log lines of a run, as its progress; ``hide``: skip lines naming it
    (the staging directory, whose files are gone when the task ends)."""
    for line in log_file.read_text(errors="replace").splitlines():
        step = ENGINE_LOG_LINE.search(line)
        if step and not step.group("message").startswith("baseline ") and not (hide and hide in step.group("message")):
            say(f"  {step.group('level'):7} {step.group('message')[:220]}")


def _set_ids(store: Store, policy: Policy, kind: BackupKind) -> set[str]:
    return {s.backup_set_id for s in list_catalog(store, policy.cluster.name, kind).sets}


@dataclass(frozen=True)
class RestoreVerdict:
    """What one restore-test run through Airflow left: its exit code and log, and the report it
    stored (None when it stored none: it failed before the checks)."""

    backup_set_id: str
    airflow_exit: int
    log_file: Path
    report_set_id: str | None = None
    report_location: str | None = None
    summary: Mapping[str, Any] | None = None
    local_report: Path | None = None

    @property
    def passed(self) -> bool:
        """The run succeeded and its stored report says passed (every check, and within the RTO)."""
        return self.airflow_exit == 0 and self.summary is not None and self.summary.get("passed") is True


def prove_restore(
    store: Store,
    policy: Policy,
    backup_set_id: str,
    *,
    log_dir: Path,
    reports_dir: Path,
    env: Mapping[str, str] | None = None,
) -> RestoreVerdict:
    """Run hms_restore_test through Airflow on ``backup_set_id`` and fetch the report it stored:
    summary.json (the figures) and a local copy of report.html under ``reports_dir``."""
    log_file = log_dir / f"demo-{RESTORE_TEST_DAG_ID}.log"
    before = _set_ids(store, policy, BackupKind.RESTORE_TEST)
    conf = json.dumps({"backup_id": backup_set_id, "mode": RESTORE_TEST_MODE})
    code = airflow("dags", "test", RESTORE_TEST_DAG_ID, "--conf", conf, log_file=log_file, env=env)
    reports = [
        s
        for s in list_catalog(store, policy.cluster.name, BackupKind.RESTORE_TEST).sets
        if s.backup_set_id not in before
        and (s.manifest.body.get("tested_set") or {}).get("backup_set_id") == backup_set_id
    ]
    if not reports:
        return RestoreVerdict(backup_set_id, code, log_file)
    report = reports[-1]
    cluster = policy.cluster.name

    def stored(name: str) -> str:
        return key_for(cluster, BackupKind.RESTORE_TEST, report.backup_set_id, name)

    summary = json.loads(store.get_bytes(stored("summary.json")))
    local = reports_dir / report.backup_set_id / "report.html"
    local.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(local, store.get_bytes(stored("report.html")).decode("utf-8"), mode=0o600)
    _fetch_data_docs(store, stored(DATA_DOCS_ARCHIVE), local.parent / "data_docs")
    return RestoreVerdict(
        backup_set_id,
        code,
        log_file,
        report_set_id=report.backup_set_id,
        report_location=store.describe(stored("report.html")),
        summary=summary,
        local_report=local,
    )


def _fetch_data_docs(store: Store, key: str, target: Path) -> None:
    """Unpack the stored Data Docs beside the local report.html, whose links point into them."""
    if not store.exists(key):
        return
    with tempfile.TemporaryFile() as archive:
        archive.write(store.get_bytes(key))
        archive.seek(0)
        with tarfile.open(fileobj=archive, mode="r:gz") as docs:
            docs.extractall(target, filter="data")  # refuses absolute paths, "..", links out of target


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def verdict_lines(verdict: RestoreVerdict) -> list[str]:
    """The restore test's outcome as the demo prints it, every figure from the stored summary."""
    summary = verdict.summary
    if summary is None:
        return [
            f"Restore test of {verdict.backup_set_id}: FAILED before its checks (airflow dags test exited"
            f" {verdict.airflow_exit}, no report stored); see {verdict.log_file}",
        ]
    checks = list(summary.get("checks") or [])
    passed_checks = sum(1 for check in checks if check.get("passed") is True)
    kinds = Counter(str(check.get("check")) for check in checks)
    rto_s, target_s = float(summary["rto_s"]), float(summary["rto_target_s"])
    lines = [
        f"Restore test of {summary['backup_set_id']}: {'PASSED' if verdict.passed else 'FAILED'}"
        f" ({RESTORE_TEST_DAG_ID} through Airflow, {summary.get('mode', RESTORE_TEST_MODE)} restore into a scratch database"
        f" on the isolated restore server)",
        f"  RTO      {_duration(rto_s)} from fetch to the end of the checks; target {_duration(target_s)}:"
        f" {'within' if rto_s <= target_s else 'OVER'} target",
        "  steps    "
        + ", ".join(f"{step} {_duration(float(s))}" for step, s in (summary.get("steps_s") or {}).items()),
        f"  checks   {passed_checks} of {len(checks)} passed ({', '.join(f'{n} {kind}' for kind, n in kinds.items())})",
    ]
    lines += [f"  failed   {message}" for message in list(summary.get("failed") or [])[:5]]
    if verdict.airflow_exit != 0:
        lines.append(f"  airflow dags test exited {verdict.airflow_exit}; see {verdict.log_file}")
    lines.append(f"  report   {verdict.report_location} (summary.json and the Data Docs beside it)")
    if verdict.local_report is not None:
        lines.append(f"  local    {verdict.local_report}")
    return lines


def run_daily_backup(store: Store, policy: Policy, log_dir: Path) -> tuple[int, BackupSet | None, float]:
    """hms_daily_logical_backup through Airflow: its exit code, the set it made (None when it made
    none) and how long it took."""
    log_file = log_dir / f"demo-{DAG_ID}.log"
    say(f"Running {DAG_ID} through Airflow (airflow dags test); task log: {log_file}")
    before = _set_ids(store, policy, BackupKind.LOGICAL)
    started = time.monotonic()
    code = airflow("dags", "test", DAG_ID, log_file=log_file)
    elapsed = time.monotonic() - started
    show_engine_steps(log_file)
    new = [
        s for s in list_catalog(store, policy.cluster.name, BackupKind.LOGICAL).sets if s.backup_set_id not in before
    ]
    return code, (new[-1] if new else None), elapsed


def show_backup_set(store: Store, policy: Policy, backup_set: BackupSet, elapsed: float) -> None:
    manifest = backup_set.manifest
    say("")
    say(f"Backup set {manifest.backup_set_id} complete in {elapsed:.0f} s (through Airflow, all tasks)")
    say(f"  manifest: {store.describe(backup_set.manifest_key)}")
    for kind in (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA):
        try:
            kind_set = find_set(store, policy.cluster.name, kind, manifest.backup_set_id)
        except HmsDrError:
            continue
        for payload in kind_set.manifest.payloads:
            say(
                f"  {kind.value:8} {store.describe(key_for(policy.cluster.name, kind, manifest.backup_set_id, payload.name))}"
                f"  {human_bytes(payload.size_bytes)} stored ({human_bytes(payload.plain_size_bytes or 0)} before"
                f" compression), sha256 {payload.sha256[:16]}…"
            )
    say(f"  encryption: {manifest.body['encryption']['mode']} to {manifest.body['encryption']['key_id']}")
    say(f"  snapshot at WAL {manifest.body['snapshot']['wal_lsn']} of PostgreSQL {manifest.body['server']['version']}")
    say("Baselines (the restore test proves a restore against these):")
    for line in summarize_baselines(manifest.baselines):
        say("  " + line)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    sandbox = load_sandbox()
    log_dir = Path(os.environ["AIRFLOW_HOME"])
    policy = load_policy()
    store = open_store(policy.store.primary_url, s3_client=sandbox.s3_client())
    say("Airflow metadata database: migrating (SQLite)…")
    if airflow("db", "migrate") != 0:
        say("airflow db migrate failed; run it by hand to see why")
        return 1
    code, backup_set, elapsed = run_daily_backup(store, policy, log_dir)
    if backup_set is None:
        say(f"No new complete backup set (airflow dags test exited {code}); see {log_dir / f'demo-{DAG_ID}.log'}")
        return code or 1
    if code != 0:
        say(f"airflow dags test exited {code}; see {log_dir / f'demo-{DAG_ID}.log'}")
        return code
    show_backup_set(store, policy, backup_set, elapsed)

    say("")
    say(
        f"Running {RESTORE_TEST_DAG_ID} on {backup_set.backup_set_id} through Airflow (airflow dags test);"
        f" task log: {log_dir / f'demo-{RESTORE_TEST_DAG_ID}.log'}"
    )
    verdict = prove_restore(
        store, policy, backup_set.backup_set_id, log_dir=log_dir, reports_dir=sandbox.state_dir / "reports"
    )
    show_engine_steps(verdict.log_file, hide=str(policy.staging.dir))
    say("")
    for line in verdict_lines(verdict):
        say(line)
    say(
        f"Sandbox: PostgreSQL on 127.0.0.1:{sandbox.pg_port}, S3 (moto) on {sandbox.s3_endpoint_url}; `make airflow` for the UI"
    )
    return 0 if verdict.passed else 1


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
