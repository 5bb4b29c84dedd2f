"""The Great Expectations run of a check plan: one ephemeral context, one postgres data source,
one suite per data asset, all validated by one checkpoint; then the Data Docs, built once and
made to read offline (see ``docs``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hms_dr.database import first_line
from hms_dr.errors import DatabaseUnavailable
from hms_dr.quality.docs import ValidationPage, make_offline
from hms_dr.quality.plan import NO_ROWS_EXPECTATION, CheckPlan, for_text_clause

log = logging.getLogger(__name__)

DATA_SOURCE = "restored"
DOCS_SITE = "restore_test"


def connection_settings(conninfo: Mapping[str, str], session_settings: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy URL without the password, and the psycopg arguments that complete it.

    The session settings ride in libpq's ``options``, so every connection GX opens renders
    ``row::text`` exactly as the backup did when it fingerprinted the views.
    """
    args: dict[str, Any] = {key: value for key, value in conninfo.items() if value}
    # libpq reads options as space-separated words; a space or backslash inside a value is escaped.
    pinned = " ".join(f"-c {name}={_escape_option(value)}" for name, value in session_settings.items())
    args["options"] = f"{args['options']} {pinned}" if args.get("options") else pinned
    args.setdefault("application_name", "hms-dr quality")
    args.setdefault("connect_timeout", "10")
    host = args.get("host", "localhost")
    # A socket directory cannot sit in a URL's host part; libpq takes it from the arguments.
    url_host = host if host and not host.startswith("/") and "," not in host else "localhost"
    url = f"postgresql+psycopg://{args.get('user', '')}@{url_host}:{args.get('port', '5432')}/{args.get('dbname', '')}"
    return url, args


def _escape_option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


@functools.cache
def no_rows_expectation_class() -> Any:
    """UnexpectedRowsExpectation that runs its query once (not twice, as the stock one does to
    count the rows apart) and keeps the rows it found in every result format."""
    from great_expectations.expectations import UnexpectedRowsExpectation

    base: Any = UnexpectedRowsExpectation

    class ExpectQueryToReturnNoRows(base):  # type: ignore[misc]
        metric_dependencies = ("unexpected_rows_query.table",)

        def _validate(
            self,
            metrics: dict[str, Any],
            runtime_configuration: dict[str, Any] | None = None,
            execution_engine: Any = None,
        ) -> dict[str, Any]:
            rows = metrics["unexpected_rows_query.table"]
            return {"success": not rows, "result": {"observed_value": len(rows), "details": {"unexpected_rows": rows}}}

    return ExpectQueryToReturnNoRows


@functools.cache
def import_great_expectations() -> Any:
    """The great_expectations module, imported once per process: seconds of Python on one core."""
    started = time.monotonic()
    # GX logs every expectation it builds, and much of its import, at INFO; a task log needs its warnings.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    log.info("great_expectations %s imported in %.1f s", gx.__version__, time.monotonic() - started)
    return gx


def run_plan(
    plan: CheckPlan,
    url: str,
    connect_args: Mapping[str, Any],
    docs_dir: Path,
    run_name: str,
    complete_plan: Callable[[CheckPlan], CheckPlan] | None = None,
) -> tuple[dict[int, Any], dict[int, Path], Path | None]:
    """Validate every planned expectation: the GX result of each and the Data Docs page that shows
    it (both by the check's index in plan.checks), and the Data Docs index page.
    DatabaseUnavailable when GX cannot reach the database.

    :param complete_plan: called once GX is imported, connected and has its assets, before any
        expectation is made: what hms-dr measured meanwhile goes into the checks (see ``measure``).
    """
    gx = import_great_expectations()
    import great_expectations.expectations as gxe
    import sqlalchemy
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        DOCS_SITE,
        {  # type: ignore[typeddict-item]
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    try:
        # kwargs (passed on to create_engine) is a field of the data source the typed signature omits.
        engine_kwargs: dict[str, Any] = {"kwargs": {"connect_args": dict(connect_args)}}
        source = context.data_sources.add_postgres(DATA_SOURCE, connection_string=url, **engine_kwargs)
    except Exception as exc:  # GX wraps the driver's error in its own TestConnectionError
        raise DatabaseUnavailable(f"Great Expectations cannot connect to {url}: {first_line(exc)}") from None

    try:
        batches: dict[str, Any] = {}
        for spec in plan.assets:
            asset: Any
            if spec.table is not None:
                # quoted_name: GX would fold a plain string to lower case ("MixedCase" -> mixedcase).
                table_name = sqlalchemy.quoted_name(spec.table[1], quote=True)
                asset = source.add_table_asset(spec.name, table_name=table_name, schema_name=spec.table[0])
            else:
                asset = source.add_query_asset(spec.name, query=for_text_clause(spec.query or ""))
            batches[spec.name] = asset.add_batch_definition_whole_table("whole")
        if complete_plan is not None:
            plan = complete_plan(plan)

        suites: dict[str, Any] = {}
        for index, check in enumerate(plan.checks):
            if check.asset is None or check.expectation is None:
                continue
            suite = suites.get(check.asset)
            if suite is None:
                suite = suites[check.asset] = context.suites.add(gx.ExpectationSuite(name=check.asset))
            cls = (
                no_rows_expectation_class()
                if check.expectation == NO_ROWS_EXPECTATION
                else getattr(gxe, check.expectation)
            )
            suite.add_expectation(
                cls(**check.kwargs, meta={"check_index": index, "check": check.kind.value, "target": check.target})
            )

        definitions = [
            context.validation_definitions.add(gx.ValidationDefinition(name=asset, data=batches[asset], suite=suite))
            for asset, suite in suites.items()
        ]
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="restore test",
                validation_definitions=definitions,
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        run_started = time.monotonic()
        outcome = checkpoint.run(
            expectation_parameters=dict(plan.parameters), run_id=gx.RunIdentifier(run_name=run_name)
        )
        log.info(
            "%d expectations in %d suites validated in %.1f s",
            sum(len(s.expectations) for s in suites.values()),
            len(suites),
            time.monotonic() - run_started,
        )
    finally:
        _release_connections(source)

    # Once for the whole run: UpdateDataDocsAction would rebuild the site after every suite.
    docs_started = time.monotonic()
    context.build_data_docs(site_names=[DOCS_SITE])
    log.info("Data Docs built in %.1f s", time.monotonic() - docs_started)

    results: dict[int, Any] = {}
    pages: dict[int, Path] = {}
    validation_pages: list[ValidationPage] = []
    for identifier, run_result in outcome.run_results.items():
        page = _page_path(context.get_docs_sites_urls(resource_identifier=identifier, site_name=DOCS_SITE))
        if page is not None:
            run_time = identifier.run_id.run_time
            validation_pages.append(
                ValidationPage(
                    page,
                    run_result.suite_name,
                    str(run_result.asset_name or ""),
                    bool(run_result.success),
                    identifier.run_id.run_name or "",
                    run_time.isoformat(timespec="seconds") if run_time else "",
                )
            )
        for result in run_result.results:
            meta = result.expectation_config.meta if result.expectation_config else None
            if meta and "check_index" in meta:
                results[int(meta["check_index"])] = result
                if page is not None:
                    pages[int(meta["check_index"])] = page
    if not docs_dir.is_dir():
        return results, pages, None
    return results, pages, make_offline(docs_dir, validation_pages)


def _page_path(urls: list[dict[str, str | None]]) -> Path | None:
    url = urls[0].get("site_url") if urls else None
    if not url or not url.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


def _release_connections(source: Any) -> None:
    """Close GX's pooled connections now: the context outlives the call (GX keeps it as the
    current project) and an idle session would stop the scratch database from being dropped."""
    for engine in (source.get_engine(), source.get_execution_engine().engine):
        engine.dispose()
