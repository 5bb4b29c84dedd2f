"""Runbook scenario 3 end to end: detect, then repair with the run the detection suggests.

A fresh daily set of the sandbox, then a COPY of its cluster (pg_basebackup; the sandbox primary
other tests use is never damaged) whose ``appointments_pkey`` gets garbage in the middle of a page
with the server stopped. hms_integrity_check on the copy fails naming the index and suggests an
hms_dr_restore conf; that conf, unchanged, run through hms_dr_restore against the copy (the swap
approved in its form by the policy's approver) restores ``appointments`` from the set into a
staging schema, checks it and swaps it in. hms_integrity_check of the table then passes, the
rows are the set's, and the damaged table is kept in the run's quarantine schema.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hitl import run_dags_test_approving
from test_integrity_check import connection_env, copy_of_production, overwrite_middle_of_page, sql, stored_report

from hms_dr.catalog import find_set
from hms_dr.manifest import BackupKind
from hms_sandbox.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CHECK = "hms_integrity_check"
REPAIR = "hms_dr_restore"


def admin_env(sandbox: Any, port: int) -> dict[str, str]:
    """hms_admin (the restore's production connection) pointed at the copy, as its superuser."""
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": port,
        "login": "postgres",
        "password": sandbox.secrets.role_passwords["postgres"],
        "schema": sandbox.database,
    }
    return {"AIRFLOW_CONN_HMS_ADMIN": json.dumps(conn)}


@pytest.fixture(scope="module")
def damaged_copy(sandbox: Any, dag_runner: Any, primary_store: Any) -> Iterator[tuple[LocalCluster, Any]]:
    daily = dag_runner.run("hms_daily_logical_backup")
    assert daily.state == "success", daily.output[-4000:]
    backup_set = find_set(primary_store, "hms-primary", BackupKind.LOGICAL, "latest")
    home = Path(sandbox.state_dir).parent / f"repair-{uuid.uuid4().hex[:6]}"
    copy = copy_of_production(sandbox, home)
    try:
        index_file = str(sql(copy, sandbox, "SELECT pg_relation_filepath('appointments_pkey')"))
        copy.stop("fast")
        overwrite_middle_of_page(copy.data_dir, index_file, block=1)
        copy.start()
        yield copy, backup_set
    finally:
        copy.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


def run_repair(
    dag_runner: Any, approvals: Any, conf: dict[str, Any], env: dict[str, str]
) -> tuple[str, str | None, dict[str, str]]:
    """hms_dr_restore under `airflow dags test`, its swap approved by the policy's approver."""
    done = run_dags_test_approving(dag_runner, approvals, REPAIR, conf, env=env)
    return done.output, done.state, done.task_states


def test_the_suggested_hms_dr_restore_run_repairs_the_corrupt_index(
    damaged_copy: tuple[LocalCluster, Any], sandbox: Any, dag_runner: Any, primary_store: Any, dags_test_approvals: Any
) -> None:
    copy, backup_set = damaged_copy
    env = {**connection_env(sandbox, copy.port), **admin_env(sandbox, copy.port)}

    detected = dag_runner.run(CHECK, name="integrity", env=env)
    assert detected.state == "failed" and detected.task_states["judge_integrity"] == "failed"
    assert (
        "pg_amcheck found corruption in 1 relation(s) of hospital_management: public.appointments_pkey (of public.appointments)"
        in detected.output
    )
    conf = stored_report(primary_store, detected.output)["repair"]["conf"]
    hinted = re.search(r"HINT: trigger hms_dr_restore with conf (\{.*?\}) \[", detected.output)
    assert hinted and json.loads(hinted.group(1)) == conf and conf["tables"] == ["appointments"]

    output, state, states = run_repair(dag_runner, dags_test_approvals, conf, env)
    assert state == "success", output[-8000:]
    assert states["swap_into_production"] == "success" and states["check_production_after_swap"] == "success"

    rechecked = dag_runner.run(CHECK, name="integrity", env=env, conf={"tables": ["public.appointments"]})
    assert rechecked.state == "success", rechecked.output[-6000:]
    assert stored_report(primary_store, rechecked.output)["status"] == "clean"
    assert (
        sql(copy, sandbox, "SELECT count(*) FROM public.appointments")
        == backup_set.manifest.baselines["tables"]["public.appointments"]["rows"]
    )
    kept = sql(
        copy,
        sandbox,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'appointments' AND n.nspname LIKE 'dr\\_quarantine\\_%'",
    )
    assert kept == 1, "the damaged table must be kept, not dropped"
