"""pg_amcheck for hms_integrity_check: a production-safe command line, its report parsed into
findings per relation (corruption vs "could not check"), and the report with the hms_dr_restore
conf that repairs the damaged tables."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hms_dr.errors import CorruptionFound, IntegrityCheckIncomplete, PreflightFailed, ToolFailed
from hms_dr.integrity import (
    AmcheckReady,
    AmcheckResult,
    Finding,
    amcheck_env,
    build_report,
    count_checked,
    judge,
    parse_pg_amcheck,
    pg_amcheck_argv,
    read_result,
    render_text,
    store_report,
    suggested_restore,
)
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo

DB = "hospital_management"
NOW = datetime(2026, 11, 28, 6, 0, 12, tzinfo=UTC)
PASSWORD = secrets.token_hex(16)  # generated per run, never a literal

VERBOSE_INDEX_ERROR = f'''btree index "{DB}.public.appointments_pkey":
    ERROR:  XX001: invalid page in block 5 of relation base/16387/16514
    LOCATION:  ReadBuffer_common, bufmgr.c:1052
    query was: SELECT "public".bt_index_check(index := c.oid, heapallindexed := true)
    FROM pg_catalog.pg_class c, pg_catalog.pg_index i WHERE c.oid = 16514 AND c.oid = i.indexrelid
'''
HEAP_MESSAGES = f'''heap table "{DB}.public.wards", block 0, offset 3:
    line pointer to page offset 8192 is not maximally aligned
heap table "{DB}.public.wards", block 1, offset 2, attribute 4:
    toast value 16390 not found in toast table
'''


def a_result(*findings: Finding) -> AmcheckResult:
    return AmcheckResult(2 if findings else 0, tuple(findings), 342, ("--no-password", "--heapallindexed"), 1.5)


def report_of(findings: list[Finding], owners: dict[str, dict[str, str]]) -> dict[str, object]:
    return build_report(
        a_result(*findings),
        owners,
        cluster="hms-primary",
        database=DB,
        report_id="20261128T060012Z",
        checked_at=NOW,
        amcheck=AmcheckReady(version="1.3", schema="public"),
    )


def test_the_command_line_is_read_only_and_takes_only_access_share_locks(pg15: PgInstall) -> None:
    argv = pg_amcheck_argv(pg15, heapallindexed=True, jobs=2, tables=["appointments"])
    assert argv[1:] == ["--no-password", "--verbose", "--jobs=2", "--heapallindexed", "--table=appointments"]
    for unsafe in ("--parent-check", "--rootdescend", "--install-missing"):
        assert unsafe not in argv
    assert "--heapallindexed" not in pg_amcheck_argv(pg15, heapallindexed=False, jobs=1)


def test_the_session_is_read_only_with_a_lock_timeout_and_the_password_stays_out_of_argv(pg15: PgInstall) -> None:
    conn = ConnectionInfo("db.internal", 5432, "hms_backup", DB, password=PASSWORD)
    env = amcheck_env(conn, lock_timeout_s=60)
    assert "-c default_transaction_read_only=on" in env["PGOPTIONS"] and "-c lock_timeout=60s" in env["PGOPTIONS"]
    assert env["PGPASSWORD"] == PASSWORD and env["PGDATABASE"] == DB
    assert PASSWORD not in " ".join(pg_amcheck_argv(pg15, heapallindexed=True, jobs=1))


def test_a_check_that_raised_an_error_names_the_relation_without_the_query() -> None:
    [finding] = parse_pg_amcheck(VERBOSE_INDEX_ERROR, DB)
    assert finding == Finding(
        "public.appointments_pkey", "btree index", ("invalid page in block 5 of relation base/16387/16514",), (), True
    )


def test_heap_messages_of_one_table_are_one_finding_with_every_location() -> None:
    [finding] = parse_pg_amcheck(HEAP_MESSAGES, DB)
    assert finding.relation == "public.wards" and finding.kind == "heap table" and finding.corruption
    assert finding.locations == ("block 0, offset 3", "block 1, offset 2, attribute 4")
    assert finding.messages == (
        "line pointer to page offset 8192 is not maximally aligned",
        "toast value 16390 not found in toast table",
    )


@pytest.mark.parametrize(
    "line",
    [
        "ERROR:  42501: permission denied for function verify_heapam",
        "ERROR:  55P03: canceling statement due to lock timeout",
        "ERROR:  permission denied for function bt_index_check",  # without --verbose: by its words
    ],
)
def test_a_relation_that_could_not_be_checked_is_not_called_corrupt(line: str) -> None:
    [finding] = parse_pg_amcheck(f'heap table "{DB}.public.billing":\n    {line}\n', DB)
    assert not finding.corruption


def test_verbose_stderr_counts_the_relations_checked() -> None:
    stderr = (
        'pg_amcheck: including database "hospital_management"\n'
        'pg_amcheck: checking heap table "hospital_management.public.wards"\n'
        'pg_amcheck: checking btree index "hospital_management.public.wards_pkey"\n'
        "WARNING:  XX001: page verification failed, calculated checksum 21840 but expected 46972\n"
    )
    assert count_checked(stderr) == 2


def test_a_database_without_amcheck_is_refused_with_how_to_install_it() -> None:
    stderr = 'pg_amcheck: warning: skipping database "hospital_management": amcheck is not installed\npg_amcheck: error: no relations to check\n'
    with pytest.raises(PreflightFailed, match="amcheck extension is not installed") as caught:
        read_result(1, "", stderr, database=DB)
    assert (
        caught.value.hint
        and "psql -d hospital_management -f include/sql/integrity/install_amcheck.sql" in caught.value.hint
    )


def test_pg_amcheck_failing_on_its_own_is_a_tool_failure_not_a_clean_check() -> None:
    with pytest.raises(ToolFailed, match='pg_amcheck exited 1: no heap tables to check matching "nosuchtable"'):
        read_result(1, "", 'pg_amcheck: error: no heap tables to check matching "nosuchtable"\n', database=DB)
    with pytest.raises(ToolFailed):
        read_result(2, "", "", database=DB)  # "corruption" with nothing to show for it
    assert read_result(0, "", "", database=DB) == []


def test_the_suggested_restore_is_a_ready_to_use_hms_dr_restore_conf() -> None:
    assert suggested_restore(["public.appointments", "billing.invoices"], report_id="20261128T060012Z") == {
        "source": "logical_backup",
        "backup_id": "latest",
        "tables": ["appointments", "billing.invoices"],
        "all_tables": False,
        "target_kind": "staging_schema",
        "staging_schema": "dr_20261128t060012z",
        "run_quality_checks": True,
        "swap_into_production": True,
        "reason": "pg_amcheck found corruption in public.appointments, billing.invoices (integrity report 20261128T060012Z)",
    }


def test_a_damaged_index_of_a_sound_table_is_repaired_by_its_table_or_by_reindex() -> None:
    findings = parse_pg_amcheck(VERBOSE_INDEX_ERROR, DB)
    report = report_of(findings, {"public.appointments_pkey": {"relkind": "i", "table": "public.appointments"}})
    assert report["status"] == "corrupt" and report["corrupt_relations"] == ["public.appointments_pkey"]
    repair = report["repair"]
    assert isinstance(repair, dict)
    assert repair["dag_id"] == "hms_dr_restore" and repair["conf"]["tables"] == ["appointments"]
    assert repair["index_only"] == ["REINDEX INDEX CONCURRENTLY public.appointments_pkey;"]


def test_indexes_of_a_damaged_table_are_not_offered_a_reindex() -> None:
    findings = parse_pg_amcheck(HEAP_MESSAGES + VERBOSE_INDEX_ERROR.replace("appointments_pkey", "wards_pkey"), DB)
    owners = {
        "public.wards": {"relkind": "r", "table": "public.wards"},
        "public.wards_pkey": {"relkind": "i", "table": "public.wards"},
    }
    repair = report_of(findings, owners)["repair"]
    assert isinstance(repair, dict)
    assert repair["conf"]["tables"] == ["wards"] and "index_only" not in repair


def test_a_damaged_system_catalog_gets_a_new_cluster_not_a_table_restore() -> None:
    findings = parse_pg_amcheck(
        f'heap table "{DB}.pg_catalog.pg_class", block 3, offset 1:\n    xmin 1 precedes relation freeze threshold\n',
        DB,
    )
    report = report_of(findings, {"pg_catalog.pg_class": {"relkind": "r", "table": "pg_catalog.pg_class"}})
    repair = report["repair"]
    assert isinstance(repair, dict)
    assert "conf" not in repair and "hms_dr_pitr" in repair["system_catalog"]
    with pytest.raises(CorruptionFound, match=r"pg_catalog\.pg_class") as caught:
        judge(report)
    assert caught.value.hint == repair["system_catalog"]


def test_corruption_fails_naming_the_relations_with_the_repair_conf_as_the_hint() -> None:
    findings = parse_pg_amcheck(VERBOSE_INDEX_ERROR + HEAP_MESSAGES, DB)
    report = report_of(
        findings,
        {
            "public.appointments_pkey": {"relkind": "i", "table": "public.appointments"},
            "public.wards": {"relkind": "r", "table": "public.wards"},
        },
    )
    with pytest.raises(CorruptionFound) as caught:
        judge(report)
    error = caught.value
    assert error.message == (
        "pg_amcheck found corruption in 2 relation(s) of hospital_management: public.appointments_pkey (of public.appointments), public.wards"
    )
    assert error.hint is not None and error.hint.startswith("trigger hms_dr_restore with conf {")
    conf = json.loads(error.hint.removeprefix("trigger hms_dr_restore with conf "))
    assert conf["tables"] == ["appointments", "wards"]
    assert error.problems == (
        "btree index public.appointments_pkey: invalid page in block 5 of relation base/16387/16514",
        "heap table public.wards: line pointer to page offset 8192 is not maximally aligned",
    )
    text = render_text(report)
    assert "CORRUPT" in text.splitlines()[0] and '"tables": ["appointments", "wards"]' in text


def test_relations_that_could_not_be_checked_make_the_check_incomplete_not_clean() -> None:
    findings = parse_pg_amcheck(
        f'btree index "{DB}.public.billing_pkey":\n    ERROR:  55P03: canceling statement due to lock timeout\n', DB
    )
    report = report_of(findings, {})
    assert report["status"] == "incomplete" and report["repair"] == {}
    with pytest.raises(IntegrityCheckIncomplete, match="could not check 1 relation"):
        judge(report)
    judge(report_of([], {}))  # clean: no error


def test_the_report_is_stored_under_the_cluster_integrity_folder(tmp_path: Path) -> None:
    from hms_dr.store import open_store

    (tmp_path / "store").mkdir()
    store = open_store((tmp_path / "store").as_uri())
    report = report_of(parse_pg_amcheck(VERBOSE_INDEX_ERROR, DB), {})
    keys = store_report(store, report, VERBOSE_INDEX_ERROR)
    assert set(keys) == {"report.json", "report.txt", "pg_amcheck.out"}
    stored = json.loads(
        (tmp_path / "store" / "hms-primary" / "integrity" / "20261128T060012Z" / "report.json").read_text()
    )
    assert stored["corrupt_relations"] == ["public.appointments_pkey"]
