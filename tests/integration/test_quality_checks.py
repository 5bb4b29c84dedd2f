"""The restore test's data-quality checks pass an exact copy of the HMS database and fail, naming
the table or view at fault, on every kind of damage a restore could do: lost rows, changed view
rows, a dropped column, a broken foreign key, duplicate primary keys, a missing table or view."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from hms_dr import baseline
from hms_dr.errors import DatabaseUnavailable
from hms_dr.policy import DEFAULT_POLICY_PATH, load_policy
from hms_dr.quality import check_restored_database
from hms_dr.quality.report import write_report_html
from hms_sandbox.hmsdb import TABLES, create_hms_database

pytestmark = pytest.mark.integration

TEMPLATE = "hms_quality"
# The runbook's smoke queries, as the committed policy holds them.
SMOKE_QUERIES = load_policy(DEFAULT_POLICY_PATH).restore_test.smoke_queries


@pytest.fixture(scope="module")
def hms_template(scratch_cluster: str) -> str:
    """The HMS database, loaded once, that every scenario copies."""
    passwords = {role: secrets.token_urlsafe(18) for role in ("hms_admin", "hms_backup", "hms_replica")}
    create_hms_database(scratch_cluster, database=TEMPLATE, scale_mb=10, passwords=passwords)
    return make_conninfo(scratch_cluster, dbname=TEMPLATE)


@pytest.fixture(scope="module")
def backup_baselines(hms_template: str) -> dict[str, Any]:
    """Baselines as the backup records them: in one REPEATABLE READ snapshot, through JSON."""
    with psycopg.connect(hms_template) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with conn.cursor() as cursor:
            measured = baseline.compute_baselines(cursor, schemas=[], views=["v_patient_summary"])
    return json.loads(json.dumps(measured))


@pytest.fixture
def restored_copy(
    scratch_cluster: str, hms_template: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """A fresh copy of the HMS database per scenario, damaged by the given statements: its DSN."""
    created: list[str] = []

    def make(*statements: str) -> str:
        name = re.sub(r"\W", "_", f"q_{request.node.name}")[:50]
        with psycopg.connect(scratch_cluster, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE))
            )
        created.append(name)
        dsn = make_conninfo(scratch_cluster, dbname=name)
        if statements:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for statement in statements:
                    conn.execute(statement)  # type: ignore[arg-type]  # the test's own fixed SQL
        return dsn

    yield make
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        for name in created:
            # No FORCE: a session GX left open would make this fail, and it must not.
            admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def run_checks(dsn: str, baselines: dict[str, Any], report_dir: Path) -> dict[str, Any]:
    summary = check_restored_database(
        dsn, baselines, report_dir=report_dir, backup_set_id="20260301T020000Z-test", smoke_queries=SMOKE_QUERIES
    )
    assert json.loads((report_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    return summary


def failures_naming(summary: dict[str, Any], *words: str) -> list[str]:
    return [m for m in summary["failed"] if all(word in m for word in words)]


def test_exact_copy_passes_with_every_table_and_view_as_in_the_baseline(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path, scratch_cluster: str
) -> None:
    summary = run_checks(restored_copy(), backup_baselines, tmp_path)

    assert summary["passed"], summary["failed"]
    assert summary["failed"] == []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for check in summary["checks"]:
        assert check["passed"], check
        by_kind.setdefault(check["check"], {})[check["target"]] = check
    for table in TABLES:
        name = f"public.{table}"
        rows = by_kind["row_count"][name]
        assert rows["expected"] == rows["observed"] == backup_baselines["tables"][name]["rows"]
        columns = by_kind["columns"][name]
        assert (
            columns["expected"] == columns["observed"] == [c[:2] for c in backup_baselines["tables"][name]["columns"]]
        )
    view = by_kind["view_rows"]["public.v_patient_summary"]
    assert view["expected"] == view["observed"] == backup_baselines["views"]["public.v_patient_summary"]
    assert len(by_kind["foreign_key"]) == sum(len(t["foreign_keys"]) for t in backup_baselines["tables"].values())
    # Every key is enforced by its restored index, so it is proven from the catalog, not scanned.
    assert {c["target"] for c in by_kind["primary_key_enforced"].values()} == {f"public.{t} (id)" for t in TABLES}
    assert "primary_key_unique" not in by_kind and "primary_key_not_null" not in by_kind
    assert len(by_kind["smoke_query"]) == 2

    docs_index = Path(summary["data_docs"])
    assert docs_index == tmp_path / "data_docs" / "index.html" and docs_index.is_file()
    report = (tmp_path / "report.html").read_text()
    assert "public.v_patient_summary" in report and "PASSED" in report
    assert not re.search(r"https?://", report), "report.html must read offline"
    links = re.findall(r'</td><td><a href="([^"]+)"', report)  # in the checks table
    assert len(links) == len(summary["checks"])  # every check links to the GX page that decided it
    assert all((tmp_path / unquote(link)).is_file() for link in set(links))
    password = psycopg.conninfo.conninfo_to_dict(scratch_cluster)["password"]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json"):
            assert str(password) not in path.read_text(errors="replace"), path


NETWORK_REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def visible_text(page: str) -> str:
    """What a browser shows of a page: no script, no style, no tags."""
    page = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", page, flags=re.I | re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_data_docs_read_offline_with_a_static_index_of_every_validation_page(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy("DELETE FROM payments WHERE id IN (SELECT id FROM payments ORDER BY id LIMIT 3)")

    summary = run_checks(dsn, backup_baselines, tmp_path)

    docs = tmp_path / "data_docs"
    for path in docs.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".css", ".js"):
            text = path.read_text(errors="replace")
            assert not NETWORK_REFERENCE.search(text), f"{path} loads from the network"
            assert not re.search(r"url\(\s*[\"']?(https?:)?//", text), f"{path} loads from the network"
    index = (docs / "index.html").read_text()
    assert "<script" not in index
    links = re.findall(r'href="([^"]+)"', index)
    assert all((docs / unquote(link)).is_file() for link in links), links
    validation_pages = {path.relative_to(docs).as_posix() for path in (docs / "validations").rglob("*.html")}
    assert validation_pages and validation_pages <= {unquote(link) for link in links}
    assert len(validation_pages) == len({c["data_docs_page"] for c in summary["checks"] if c["data_docs_page"]})
    # One row per validation page: its outcome, suite and asset as text; payments lost rows.
    rows = {visible_text(row).strip() for row in re.findall(r"<tr class=.*?</tr>", index, re.S)}
    assert len(rows) == len(validation_pages)
    assert any(row.startswith("FAIL public.payments public.payments") for row in rows), rows
    assert any(row.startswith("pass public.patients public.patients") for row in rows), rows

    [payments_page] = [
        c["data_docs_page"] for c in summary["checks"] if c["check"] == "row_count" and c["target"] == "public.payments"
    ]
    page = (tmp_path / payments_page).read_text()
    text = visible_text(page)
    assert "public.payments" in text and "Failed" in text
    baseline_rows = backup_baselines["tables"]["public.payments"]["rows"]
    assert f"Must have exactly {baseline_rows} rows. {baseline_rows - 3}" in text
    assert page.count('<style id="hms-dr-offline">') == 1  # draws GX's status icons as text


def test_report_html_from_the_final_summary_shows_rto_steps_and_checks(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    outcome = run_checks(restored_copy(), backup_baselines, tmp_path)
    # The summary hms_restore_test's check_against_baselines writes once the checks are done.
    final = {
        "backup_set_id": outcome["backup_set_id"],
        "backup_manifest": "file:///store/hms/logical/x/manifest.json",
        "scratch_database": "hms_restore_test_x",
        "passed": False,
        "checks_passed": True,
        "checks": outcome["checks"],
        "failed": [],
        "rto_s": 14500.25,
        "rto_target_s": 14400,
        "steps_s": {"download_and_verify": 100.5, "decrypt": 20.25, "pg_restore": 14000.0, "quality_checks": 300.0},
    }

    report = write_report_html(final, tmp_path).read_text()

    text = visible_text(report)
    assert "Restore test of backup set 20260301T020000Z-test: FAILED" in text
    assert "longer than the RTO target" in text and "OVER THE TARGET of 4.00 h (14400 s)" in text
    assert "RTO 4.03 h (14500 s)" in text
    for step, seconds in (
        ("download and verify", "100.500"),
        ("decrypt", "20.250"),
        ("pg restore", "14000.000"),
        ("quality checks", "300.000"),
        ("between steps (scheduling, task start-up)", "79.500"),
    ):
        assert f"{step} {seconds}" in text
    assert f"{len(outcome['checks'])} of {len(outcome['checks'])} passed" in text
    assert "public.v_patient_summary" in text
    assert not NETWORK_REFERENCE.search(report) and "<script" not in report and "<link" not in report
    links = re.findall(r'href="([^"]+)"', report)
    assert all((tmp_path / unquote(link)).is_file() for link in links)


def test_deleted_rows_fail_naming_the_table_and_both_counts(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy("DELETE FROM payments WHERE id IN (SELECT id FROM payments ORDER BY id LIMIT 3)")
    baseline_rows = backup_baselines["tables"]["public.payments"]["rows"]

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    assert failures_naming(summary, "public.payments", f"has {baseline_rows - 3} rows", f"baseline {baseline_rows}")
    assert not failures_naming(summary, "public.patients ")  # the other tables are intact


def test_changed_view_rows_fail_on_the_fingerprint_with_the_same_row_count(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy("UPDATE patients SET first_name = first_name || 'x' WHERE id = (SELECT min(id) FROM patients)")

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    assert summary["failed"] == [m for m in summary["failed"] if "public.v_patient_summary" in m]
    [message] = summary["failed"]
    rows = backup_baselines["views"]["public.v_patient_summary"]["rows"]
    assert "fingerprint" in message and f"{rows} rows as in the baseline" in message


def test_dropped_column_fails_naming_the_table_and_its_columns(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy("ALTER TABLE patients DROP COLUMN notes")

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    [message] = failures_naming(summary, "table public.patients columns differ")
    assert "missing notes text" in message and "has [id bigint, mrn character varying(12)" in message


def test_broken_foreign_key_fails_naming_the_table_and_the_constraint(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    # As a superuser in replica mode, PostgreSQL fires no foreign-key trigger: an orphan gets in.
    dsn = restored_copy(
        "SET session_replication_role = replica",
        "UPDATE payments SET invoice_id = -1 WHERE id = (SELECT min(id) FROM payments)",
    )

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    [message] = failures_naming(summary, "public.payments", "payments_invoice_id_fkey")
    assert "has 1 row breaking foreign key" in message and "public.billing (id)" in message


def test_duplicate_primary_key_values_fail_naming_the_table(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy(
        "ALTER TABLE payments DROP CONSTRAINT payments_pkey",
        "INSERT INTO payments OVERRIDING SYSTEM VALUE SELECT * FROM payments WHERE id = (SELECT min(id) FROM payments)",
    )

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    messages = failures_naming(summary, "public.payments", "primary key (id)")
    assert any("no valid primary key (id)" in m for m in messages), messages  # the lost constraint
    assert any("has 2 rows sharing primary key (id) values" in m for m in messages), messages  # and what it let in


def test_missing_table_fails_naming_it(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy("DROP TABLE audit_log CASCADE")
    baseline_rows = backup_baselines["tables"]["public.audit_log"]["rows"]

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    columns = len(backup_baselines["tables"]["public.audit_log"]["columns"])
    assert f"table public.audit_log is missing (baseline {columns} columns)" in summary["failed"]
    assert f"table public.audit_log is missing (baseline {baseline_rows} rows)" in summary["failed"]
    assert len(summary["failed"]) == 2


def test_missing_view_fails_the_view_check_and_the_smoke_query(
    restored_copy: Callable[..., str], backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    dsn = restored_copy("DROP VIEW v_patient_summary")

    summary = run_checks(dsn, backup_baselines, tmp_path)

    assert not summary["passed"]
    assert failures_naming(summary, "view public.v_patient_summary is missing")
    assert failures_naming(summary, "smoke query", "v_patient_summary", "does not exist")
    assert len(summary["failed"]) == 2


def test_partitioned_and_inheritance_tables_are_checked_row_for_row_as_pg_dump_sees_them(
    restored_copy: Callable[..., str], tmp_path: Path
) -> None:
    # Each partition, and each inheritance child, is a table of its own in the baselines: a parent
    # counts and keys only its own rows (FROM ONLY), or the child's duplicate id would fail it.
    dsn = restored_copy(
        "CREATE TABLE readings (id bigint, taken_on date, value numeric, PRIMARY KEY (id, taken_on)) PARTITION BY RANGE (taken_on)",
        "CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "INSERT INTO readings SELECT g, date '2024-06-01' + g, g FROM generate_series(1, 400) AS g",
        "CREATE TABLE legacy_parent (id integer PRIMARY KEY, note text)",
        "CREATE TABLE legacy_child (extra integer) INHERITS (legacy_parent)",
        "INSERT INTO legacy_parent VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO legacy_child VALUES (1, 'same id as in the parent', 5)",
    )
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with conn.cursor() as cursor:
            baselines = json.loads(
                json.dumps(baseline.compute_baselines(cursor, schemas=[], views=["v_patient_summary"]))
            )
    assert baselines["tables"]["public.readings"]["rows"] == 0

    summary = run_checks(dsn, baselines, tmp_path)

    assert summary["passed"], summary["failed"]
    targets = {(c["check"], c["target"]) for c in summary["checks"]}
    assert ("primary_key_enforced", "public.readings (id, taken_on)") in targets
    assert ("row_count", "public.readings_2025") in targets and (
        "primary_key_enforced",
        "public.legacy_parent (id)",
    ) in targets


def test_unreachable_database_raises_database_unavailable(
    scratch_cluster: str, backup_baselines: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(DatabaseUnavailable, match="no_such_database"):
        check_restored_database(
            make_conninfo(scratch_cluster, dbname="no_such_database"),
            backup_baselines,
            report_dir=tmp_path,
            backup_set_id="x",
            smoke_queries=(),
        )
