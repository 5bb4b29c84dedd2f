"""Data quality of a restored database: does it hold exactly what the backup set's baselines say?

``plan`` surveys the restored database and writes every check as a Great Expectations
expectation; ``measure`` computes the rows of the costly ones on its own connections while GX is
imported; ``gxrun`` validates them all in one GX run and builds the Data Docs; ``report`` turns
the results into one row per check and writes ``summary.json`` and an offline ``report.html``;
``docs`` makes the Data Docs read offline too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hms_dr import baseline
from hms_dr.errors import DatabaseUnavailable
from hms_dr.logical.content import DigestTaken, digesting_restored
from hms_dr.pginstalls import client_install
from hms_dr.policy import SmokeQuery
from hms_dr.quality.gxrun import connection_settings, import_great_expectations, run_plan
from hms_dr.quality.measure import MEASURING_CONNECTIONS, measuring_ahead
from hms_dr.quality.plan import CheckKind, Survey, plan_checks, survey_database
from hms_dr.quality.report import judge, page_link, write_report_html, write_summary

log = logging.getLogger(__name__)

__all__ = ["CheckKind", "check_restored_database"]


def check_restored_database(
    dsn: str,
    baselines: Mapping[str, Any],
    *,
    report_dir: Path,
    backup_set_id: str,
    smoke_queries: Sequence[SmokeQuery],
    content_taken: DigestTaken | None = None,
) -> dict[str, Any]:
    """Check the restored database against the baselines; a failed check is reported, not raised.

    :param dsn: libpq key=value connection string of the restored database.
    :param baselines: the manifest's ``baselines`` (see ``hms_dr.baseline``).
    :param smoke_queries: the policy's ``restore_test.smoke_queries`` (or none: an empty sequence).
    :param content_taken: the content digests, taken already as the database was restored
        (``hms_dr.logical.as_restored``); without them the checks take them now.
    :param report_dir: where ``summary.json``, ``report.html`` and the Data Docs (``data_docs/``) go.
    :returns: ``backup_set_id``, ``passed``, ``checks`` (one row per check, with the Data Docs
        page that decided it relative to report_dir), ``failed`` (their messages), ``data_docs``
        (the Data Docs index page) and ``seconds``.
    :raises DatabaseUnavailable: the restored database cannot be reached.
    """
    started = time.monotonic()
    from psycopg.conninfo import conninfo_to_dict

    conninfo = {key: str(value) for key, value in conninfo_to_dict(dsn).items() if value is not None}
    with _connect(conninfo) as connection, connection.cursor() as cursor:
        survey = survey_database(cursor, baselines)
        cursor.execute("SELECT current_setting('server_version_num')::int, current_setting('server_version')")
        version_num, version = cursor.fetchone()
    # The digest's pg_dump is chosen for the restored server: an upgrade rehearsal restores into
    # a newer major than the one the set was taken from.
    pg = client_install(version_num // 10000, server=f"the restored server ({version})")
    # The content digest reads every restored row in programs of its own (pg_dump and the digest),
    # from now until the GX checks are done.
    with digesting_restored(conninfo, baselines, pg, taken=content_taken) as restored_content:
        checks, docs_index = _checks(baselines, survey, smoke_queries, conninfo, report_dir, backup_set_id)
        checks += restored_content.rows()
    failed = [check["message"] for check in checks if not check["passed"]]
    summary: dict[str, Any] = {
        "backup_set_id": backup_set_id,
        "passed": not failed,
        "checks": checks,
        "failed": failed,
        "data_docs": str(docs_index) if docs_index else None,
        "seconds": round(time.monotonic() - started, 3),
    }
    write_summary(summary, report_dir)
    write_report_html(summary, report_dir)
    log.info(
        "restore test of %s: %d checks, %d failed, in %.1f s; report %s",
        backup_set_id,
        len(checks),
        len(failed),
        summary["seconds"],
        report_dir / "report.html",
    )
    for message in failed:
        log.warning("restore test of %s: %s", backup_set_id, message)
    return summary


def _checks(
    baselines: Mapping[str, Any],
    survey: Survey,
    smoke_queries: Sequence[SmokeQuery],
    conninfo: Mapping[str, str],
    report_dir: Path,
    backup_set_id: str,
) -> tuple[list[dict[str, Any]], Any]:
    """Every GX check of the plan, validated, as report rows; and the Data Docs index page."""
    plan = plan_checks(baselines, survey, [(query.name, query.sql) for query in smoke_queries])
    settings = baselines.get("session_settings") or baseline.FINGERPRINT_SESSION_SETTINGS
    url, connect_args = connection_settings(conninfo, settings)
    report_dir.mkdir(parents=True, exist_ok=True)
    # The costly queries start now and run while GX is imported (seconds of Python on one core); GX
    # then validates the rows they returned. One connection during the import, so the view's rows,
    # measured first and usually the longest, have the other core to themselves; more after it.
    with measuring_ahead(plan, connect_args, connections=1) as measurement:
        import_great_expectations()
        measurement.add_connections(MEASURING_CONNECTIONS - 1)
        results, pages, docs_index = run_plan(
            plan,
            url,
            connect_args,
            report_dir / "data_docs",
            run_name=f"restore-test-{backup_set_id}",
            complete_plan=measurement.complete,
        )
    rows = [
        {**judge(check, results.get(index)), "data_docs_page": page_link(pages.get(index), report_dir)}
        for index, check in enumerate(plan.checks)
    ]
    return rows, docs_index


def _connect(conninfo: Mapping[str, str]) -> Any:
    import psycopg

    where = (
        f"{conninfo.get('user', '')}@{conninfo.get('host', '')}:{conninfo.get('port', '')}/{conninfo.get('dbname', '')}"
    )
    try:
        return psycopg.connect(autocommit=True, **{"connect_timeout": "10", **conninfo})  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        raise DatabaseUnavailable(
            f"cannot connect to the restored database {where}: {text.splitlines()[0] if text else type(exc).__name__}"
        ) from None
