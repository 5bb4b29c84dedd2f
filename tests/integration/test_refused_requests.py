"""Requests the first task refuses, through Airflow (`airflow dags test`, which runs the failure
callbacks) on the sandbox, with its real SMTP sink.

Issue 11: a DR run triggered with ``table`` (a typo) for ``tables`` restored every table into a
staging schema of production, and eleven mistyped requests sent eleven FAILED e-mails. Now every
DAG with params refuses a key it does not declare in its first task, naming it and every param,
before anything is touched; a refused request fails its run and is audited, but pages nobody;
and a real failure found by the same first task (a restore key that is not configured) still
pages, as before.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_alerts_reach_the_smtp_sink import Mailbox, body
from test_dr_restore_logical import REASON, audit_of, database_state, sql

from hms_dr.catalog import find_set
from hms_dr.errors import NoBackupForTarget
from hms_dr.manifest import BackupKind

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
RESTORE = "hms_dr_restore"


@pytest.fixture(scope="module")
def production(sandbox: Any) -> Iterator[None]:
    """Whatever a run that was NOT refused would leave (a staging schema, a database) goes at the
    end, so a failing test does not leave production's sandbox changed for the next ones."""
    schemas = {r[0] for r in sql(sandbox, "SELECT nspname FROM pg_namespace")}
    databases = {r[0] for r in sql(sandbox, "SELECT datname FROM pg_database")}
    yield
    for (schema,) in sql(sandbox, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dr\\_%'"):
        if schema not in schemas:
            sql(sandbox, f'DROP SCHEMA "{schema}" CASCADE')
    for (database,) in sql(sandbox, "SELECT datname FROM pg_database WHERE datname LIKE 'dr\\_%'"):
        if database not in databases:
            sql(sandbox, f'DROP DATABASE "{database}"')


@pytest.fixture()
def pitr_root(sandbox: Any) -> Iterator[Path]:
    """The sandbox policy's allowed data root; a cluster a run that was NOT refused would recover
    below it is stopped and removed afterwards."""
    from hms_sandbox.cluster import LocalCluster

    root = Path(sandbox.paths.state_dir) / "pitr"
    yield root
    recovered = root / "refused"
    if (recovered / "data").exists():
        LocalCluster(recovered / "data", 1, recovered / "log" / "x.log").stop("immediate")
    shutil.rmtree(recovered, ignore_errors=True)


@pytest.fixture(scope="module")
def daily_set(dag_runner: Any, primary_store: Any) -> Any:
    """The newest daily set; one is taken when this sandbox has none yet."""
    try:
        return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")
    except NoBackupForTarget:
        outcome = dag_runner.run("hms_daily_logical_backup")
        assert outcome.state == "success", outcome.output[-4000:]
        return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")


def stored_keys(sandbox: Any) -> dict[str, set[str]]:
    """Every object of both buckets but the audit trail (a refused DR run is audited)."""
    client = sandbox.s3_client()
    keys: dict[str, set[str]] = {}
    for bucket in (sandbox.primary_bucket, sandbox.offsite_bucket):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        keys[bucket] = {o["Key"] for page in pages for o in page.get("Contents", []) if "/audit/" not in o["Key"]}
    return keys


def test_a_mistyped_tables_key_restores_nothing_is_audited_and_pages_nobody(
    dag_runner: Any, sandbox: Any, primary_store: Any, daily_set: Any, production: None
) -> None:
    """With a daily set to restore from, as in the incident (which restored all of it)."""
    mailbox = Mailbox(sandbox)
    before, stored_before = database_state(sandbox), stored_keys(sandbox)
    outcome = dag_runner.run(RESTORE, conf={"table": ["appointments"], "reason": REASON}, name="refused")

    assert outcome.state == "failed"
    assert (
        outcome.task_states["validate_request"] == "failed" and outcome.task_tries["validate_request"] == 1
    )  # not retried
    assert outcome.task_states["restore_into_target"] == "upstream_failed"
    assert outcome.task_states["record_outcome"] == "success"
    refusal = "hms_dr_restore has no param 'table' (did you mean 'tables'?): refused before anything was done; its params are all_tables, "
    assert refusal in outcome.output
    # production untouched: no staging schema or database, every row count as it was; nothing stored
    assert database_state(sandbox) == before and stored_keys(sandbox) == stored_before
    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["failed"]
    assert records[0]["outcome"].startswith(f"validate_request: RequestRefused: {refusal}")
    assert records[0]["params"]["table"] == ["appointments"] and records[0]["reason"] == REASON
    assert mailbox.new(RESTORE, "failure") == [], "a refused request must not page"
    assert "not paging the on-call for a refused request" in outcome.output


def test_an_empty_tables_list_without_all_tables_is_refused(
    dag_runner: Any, sandbox: Any, primary_store: Any, daily_set: Any, production: None
) -> None:
    mailbox = Mailbox(sandbox)
    before = database_state(sandbox)
    outcome = dag_runner.run(RESTORE, conf={"tables": [], "reason": REASON}, name="refused")
    assert outcome.state == "failed" and outcome.task_states["validate_request"] == "failed"
    line = "RequestRefused: tables is empty: name the tables to restore (e.g. appointments), or set all_tables to restore every table"
    assert line in outcome.output
    assert database_state(sandbox) == before
    assert [r["outcome"] for r in audit_of(primary_store, outcome.run_id)] == [f"validate_request: {line}"]
    assert mailbox.new(RESTORE, "failure") == []


def test_a_set_that_does_not_exist_is_refused_with_the_newest_ids_to_choose_from(
    dag_runner: Any, sandbox: Any, primary_store: Any, daily_set: Any, production: None
) -> None:
    mailbox = Mailbox(sandbox)
    before = database_state(sandbox)
    outcome = dag_runner.run(
        RESTORE, conf={"tables": ["appointments"], "backup_id": "20200101T020000Z", "reason": REASON}, name="refused"
    )
    assert outcome.state == "failed" and outcome.task_states["validate_request"] == "failed"
    complete = {
        o.key.split("/")[2] for o in primary_store.list(f"{CLUSTER}/logical/") if o.key.endswith("/manifest.json")
    }
    newest = sorted(complete, reverse=True)[:10]
    assert daily_set.backup_set_id in newest
    listed = re.search(
        r"RequestRefused: no complete logical backup set 20200101T020000Z in s3://\S+; the newest logical sets?: ([0-9TZ]+(?:, [0-9TZ]+)*)",
        outcome.output,
    )
    assert listed and listed.group(1).split(", ") == newest, outcome.output[-4000:]
    assert database_state(sandbox) == before
    assert [r["event"] for r in audit_of(primary_store, outcome.run_id)] == ["failed"]
    assert mailbox.new(RESTORE, "failure") == []


def test_a_real_failure_found_by_the_same_first_task_still_pages(
    dag_runner: Any, sandbox: Any, primary_store: Any, production: None
) -> None:
    """A restore key that is not configured: the system's fault, not the request's."""
    mailbox = Mailbox(sandbox)
    before = database_state(sandbox)
    conf = {
        "source": "point_in_time",
        "target_time": "2026-01-01T00:00:00Z",
        "tables": ["appointments"],
        "reason": REASON,
    }
    outcome = dag_runner.run(
        RESTORE,
        conf=conf,
        policy={"encryption.restore_connection_id": "hms_restore_key_not_configured"},
        name="no-restore-key",
    )
    assert outcome.state == "failed" and outcome.task_states["validate_request"] == "failed"
    assert database_state(sandbox) == before
    reason = "PreflightFailed: Airflow connection 'hms_restore_key_not_configured' is not defined"
    assert audit_of(primary_store, outcome.run_id)[0]["outcome"].startswith(f"validate_request: {reason}")
    messages = mailbox.new(RESTORE, "failure")
    assert len(messages) == 1, "a real failure pages, once"
    assert messages[0]["Subject"].startswith(f"[hms-dr] FAILED {RESTORE}.validate_request: {reason}")
    assert f"Run:     {outcome.run_id}" in body(messages[0])


UNKNOWN_KEY = {
    # dag_id: (its first task, a conf with one mistyped key among good ones, the key and what it was meant to be)
    "hms_dr_pitr": (
        "validate_request",
        {"target_type": "latest", "data_directory": "{root}/refused/data", "reason": "drill: refused", "promot": False},
        "'promot' (did you mean 'promote'?)",
    ),
    "hms_restore_test": (
        "choose_backup_set",
        {"mode": "logical", "backupid": "20261124T020001Z"},
        "'backupid' (did you mean 'backup_id'?)",
    ),
    "hms_integrity_check": ("check_amcheck_installed", {"table": ["appointments"]}, "'table' (did you mean 'tables'?)"),
    "hms_offsite_sync": ("check_both_stores", {"reverify": True}, "'reverify' (did you mean 'reverify_all'?)"),
    "hms_weekly_base_backup": ("back_up_cluster", {"backuptype": "full"}, "'backuptype' (did you mean 'backup_type'?)"),
}


@pytest.mark.parametrize("dag_id", sorted(UNKNOWN_KEY))
def test_every_other_dag_with_params_refuses_an_unknown_key_in_its_first_task_without_paging(
    dag_id: str, dag_runner: Any, sandbox: Any, production: None, pitr_root: Path
) -> None:
    first_task, conf, named = UNKNOWN_KEY[dag_id]
    conf = {k: v.format(root=pitr_root) if isinstance(v, str) else v for k, v in conf.items()}
    mailbox = Mailbox(sandbox)
    before, stored_before = database_state(sandbox), stored_keys(sandbox)
    outcome = dag_runner.run(dag_id, conf=conf, name="refused")

    assert outcome.state == "failed", outcome.output[-4000:]
    assert outcome.task_states[first_task] == "failed" and outcome.task_tries[first_task] == 1
    assert all(
        state != "success" for task, state in outcome.task_states.items() if task not in (first_task, "record_outcome")
    )
    assert (
        f"RequestRefused: {dag_id} has no param {named}: refused before anything was done; its params are "
        in outcome.output
    )
    assert database_state(sandbox) == before and stored_keys(sandbox) == stored_before
    assert not (pitr_root / "refused").exists()
    assert mailbox.new(dag_id, "failure") == []
