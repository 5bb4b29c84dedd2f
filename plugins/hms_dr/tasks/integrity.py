"""Task callables of hms_integrity_check: amcheck ready, pg_amcheck on production (read-only),
the report stored and logged, then the verdict: corruption fails the run with the relations and
the hms_dr_restore conf that repairs them (the alert carries both)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import get_current_context, task

from hms_dr import patterns
from hms_dr.errors import RequestRefused
from hms_dr.manifest import new_backup_set_id
from hms_dr.patterns import matcher
from hms_dr.policy import Policy, load_policy
from hms_dr.tasks.connections import database_connection, open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry
from hms_dr.tasks.params import run_params

log = logging.getLogger(__name__)

TABLE_NAME = matcher(patterns.TABLE)  # as the form checks it, and as the DR form takes it


def _production(policy: Policy) -> Any:
    return database_connection(policy.cluster.connection_id, policy.cluster.database)


def _tables(params: dict[str, Any]) -> list[str]:
    tables = params.get("tables") or []
    if not isinstance(tables, list) or not all(isinstance(t, str) and TABLE_NAME.fullmatch(t) for t in tables):
        raise RequestRefused(
            f"tables must be a list of table names as SQL writes them, such as appointments, public.billing "
            f'or public."Order Details", got {tables!a}'
        )
    return list(tables)


@task
@engine_errors_decide_retry
def check_amcheck_installed() -> dict[str, Any]:
    """The run's params are this DAG's and well formed; the amcheck extension is installed in the
    database and the check role may run its two read-only checks, otherwise one line with the
    command that sets it up."""
    from hms_dr.integrity import check_amcheck_ready

    _tables(run_params(get_current_context()))
    ready = check_amcheck_ready(_production(load_policy()))
    log.info("amcheck %s is installed in schema %s", ready.version, ready.schema)
    return ready.to_xcom()


@task
@engine_errors_decide_retry
def run_pg_amcheck(amcheck: dict[str, Any]) -> dict[str, Any]:
    """pg_amcheck (heap + B-tree, --heapallindexed) as the backup role in a read-only session;
    the report (JSON, text, pg_amcheck's output) goes to <cluster>/integrity/<id>/ and the log."""
    from hms_dr import integrity

    ready = integrity.AmcheckReady.from_xcom(amcheck)
    params = dict(get_current_context()["params"])
    policy = load_policy()
    settings = policy.dr.integrity
    conn = _production(policy)
    checked_at = datetime.now(UTC)
    result = integrity.run_pg_amcheck(
        conn,
        heapallindexed=bool(params.get("heapallindexed", settings.heapallindexed)),
        jobs=settings.jobs,
        lock_timeout_s=settings.lock_timeout_s,
        tables=_tables(params),
        timeout_s=max(60.0, settings.execution_timeout_min * 60 - 60),
    )
    owners = integrity.owning_tables(conn, [f.relation for f in result.findings])
    report = integrity.build_report(
        result,
        owners,
        cluster=policy.cluster.name,
        database=conn.dbname,
        report_id=new_backup_set_id(checked_at),
        checked_at=checked_at,
        amcheck=ready,
    )
    keys = integrity.store_report(open_policy_store(policy), report, result.output)
    for line in integrity.render_text(report).splitlines():
        log.info("%s", line)
    log.info("integrity report: %s", keys["report.json"])
    return integrity.IntegrityCheck(report=report, stored=keys).to_xcom()


@task
@engine_errors_decide_retry
def judge_integrity(check: dict[str, Any]) -> str:
    """Fail the run when pg_amcheck found corruption (or could not check everything)."""
    from hms_dr.integrity import IntegrityCheck, judge

    report = IntegrityCheck.from_xcom(check).report
    judge(report)
    return f"{report['database']}: no corruption in {report['relations_checked']} relations"
