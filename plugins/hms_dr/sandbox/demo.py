"""`make demo`: run the daily logical backup through Airflow on the sandbox, then show the set.

Runs `airflow dags test hms_daily_logical_backup` (the real DAG from dags/, every task in
order) against the sandbox started by `make sandbox`, then reads the newest complete set back
from the store and prints its id, location, sizes and baselines. Exits non-zero if the run
failed or left no complete set.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from hms_dr.baseline import summarize_baselines
from hms_dr.catalog import find_set, key_for
from hms_dr.manifest import BackupKind
from hms_dr.policy import load_policy
from hms_dr.sandbox.state import load_sandbox
from hms_dr.store import open_store
from hms_dr.units import human_bytes

DAG_ID = "hms_daily_logical_backup"
# A structlog console line of the engine: "<ts> [info     ] <message> [hms_dr.<module>] loc=..."
ENGINE_LOG_LINE = re.compile(r"\[(?P<level>info|warning|error)\s*\] (?P<message>.*?) \[hms_dr[\w.]*\]")


def airflow(*args: str, log_file: Path | None = None) -> int:
    """Run the airflow CLI of this venv with the sandbox environment (already exported)."""
    executable = str(Path(sys.executable).with_name("airflow"))
    if log_file is None:
        return subprocess.run([executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT).returncode
    with log_file.open("w") as out:
        return subprocess.run([executable, *args], stdout=out, stderr=subprocess.STDOUT).returncode


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    sandbox = load_sandbox()
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    log_file = airflow_home / f"demo-{DAG_ID}.log"
    say("Airflow metadata database: migrating (SQLite, first run takes a minute)…")
    if airflow("db", "migrate") != 0:
        say("airflow db migrate failed; run it by hand to see why")
        return 1
    say(f"Running {DAG_ID} through Airflow (airflow dags test); task log: {log_file}")
    started = time.monotonic()
    code = airflow("dags", "test", DAG_ID, log_file=log_file)
    elapsed = time.monotonic() - started
    for line in log_file.read_text(errors="replace").splitlines():
        step = ENGINE_LOG_LINE.search(line)
        if step and not step.group("message").startswith("baseline "):
            say(f"  {step.group('level'):7} {step.group('message')[:220]}")

    policy = load_policy()
    store = open_store(policy.store.primary_url, s3_client=sandbox.s3_client())
    try:
        backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, "latest")
    except Exception as exc:  # the run failed: say so and point at the log
        say(f"No complete backup set: {exc}. See {log_file}")
        return 1
    manifest = backup_set.manifest
    if code != 0:
        say(f"airflow dags test exited {code}; see {log_file}")
        return code
    say("")
    say(f"Backup set {manifest.backup_set_id} complete in {elapsed:.0f} s (through Airflow, all tasks)")
    say(f"  manifest: {store.describe(backup_set.manifest_key)}")
    for kind in (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA):
        try:
            kind_set = find_set(store, policy.cluster.name, kind, manifest.backup_set_id)
        except Exception:
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
    say(f"Sandbox: PostgreSQL on 127.0.0.1:{sandbox.pg_port}, S3 (moto) on {sandbox.s3_endpoint_url}; `make airflow` for the UI")
    return 0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
