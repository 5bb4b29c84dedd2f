"""A baseline view whose rows are not fixed by the data (an unordered string_agg, LIMIT without
ORDER BY, random(), now(), row_number() OVER ()) is refused by name when the policy names it,
from the catalog alone, also when the cause is in a view it reads; the HMS views pass."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from hms_dr.errors import PreflightFailed
from hms_dr.view_determinism import fingerprints_under_two_plans, refuse_nondeterministic_views, static_reasons
from hms_sandbox.hmsdb import create_hms_database

pytestmark = pytest.mark.integration

DATABASE = "hms_views"
HMS_VIEWS = ["v_patient_summary", "v_department_census", "v_outstanding_invoices"]
VIEWS = {
    "v_staff_names": "SELECT department_id, string_agg(last_name, ', ') AS names FROM staff GROUP BY department_id",
    "v_staff_names_ordered": "SELECT department_id, string_agg(last_name, ', ' ORDER BY last_name, id) AS names FROM staff GROUP BY 1",
    "v_staff_ids_distinct": "SELECT department_id, array_agg(DISTINCT id) AS ids FROM staff GROUP BY 1",
    "v_reads_staff_names": "SELECT department_id, names FROM v_staff_names WHERE department_id > 0",
    "v_some_patients": "SELECT id, mrn FROM patients LIMIT 10",
    "v_first_patients": "SELECT id, mrn FROM patients ORDER BY id LIMIT 10",
    "v_random_departments": "SELECT id, random() AS draw FROM departments",
    "v_departments_now": "SELECT id, now() AS measured_at FROM departments",
    "v_numbered_staff": "SELECT row_number() OVER () AS n, id FROM staff",
    "v_ranked_staff": "SELECT row_number() OVER (ORDER BY id) AS n, id FROM staff",
    "v_one_staff_per_department": "SELECT DISTINCT ON (department_id) department_id, last_name FROM staff",
    "v_newest_staff_per_department": "SELECT DISTINCT ON (department_id) department_id, last_name FROM staff ORDER BY department_id, id DESC",
    "v_staff_json": "SELECT department_id, json_agg(s.*) AS staff FROM staff s GROUP BY 1",
    "v_subquery_aggregate": "SELECT d.id, (SELECT string_agg(last_name, ',') FROM staff s WHERE s.department_id = d.id) AS names FROM departments d",
}


@pytest.fixture(scope="module")
def backup_role_dsn(scratch_cluster: str) -> Iterator[str]:
    """The HMS database with the views above, as its backup role (no superuser) sees it."""
    passwords = {role: secrets.token_urlsafe(18) for role in ("hms_admin", "hms_backup", "hms_replica")}
    create_hms_database(scratch_cluster, database=DATABASE, scale_mb=2, passwords=passwords)
    with psycopg.connect(make_conninfo(scratch_cluster, dbname=DATABASE), autocommit=True) as admin:
        for name, query in VIEWS.items():
            admin.execute(f"CREATE VIEW {name} AS {query}")  # type: ignore[arg-type]  # the test's own fixed SQL
        admin.execute("CREATE MATERIALIZED VIEW mv_staff_names AS SELECT * FROM v_staff_names")
    yield make_conninfo(scratch_cluster, dbname=DATABASE, user="hms_backup", password=passwords["hms_backup"])


def reasons_of(dsn: str, names: list[str]) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        return static_reasons(cursor, names)


@pytest.mark.parametrize(
    ("view", "words"),
    [
        ("v_staff_names", "aggregates with string_agg() without ORDER BY inside it"),
        (
            "v_reads_staff_names",
            "string_agg() without ORDER BY inside it, so its result depends on the order rows arrive in (in public.v_staff_names, which it reads)",
        ),
        ("mv_staff_names", "(in public.v_staff_names, which it reads)"),
        ("v_some_patients", "has LIMIT or OFFSET without ORDER BY"),
        ("v_random_departments", "calls random(), whose value changes from run to run"),
        ("v_departments_now", "calls now()"),
        ("v_numbered_staff", "uses row_number() over a window without ORDER BY"),
        ("v_one_staff_per_department", "has DISTINCT ON without an ORDER BY beyond its DISTINCT ON expressions"),
        ("v_staff_json", "json_agg() without ORDER BY"),
        ("v_subquery_aggregate", "string_agg() without ORDER BY"),
    ],
)
def test_a_view_whose_rows_are_not_fixed_is_found_with_its_reason(backup_role_dsn: str, view: str, words: str) -> None:
    found = reasons_of(backup_role_dsn, [view])
    assert list(found) == [view]
    assert any(words in reason for reason in found[view]), found


def test_the_hms_views_and_ordered_views_pass(backup_role_dsn: str) -> None:
    fixed = [
        *HMS_VIEWS,
        "v_staff_names_ordered",
        "v_staff_ids_distinct",
        "v_first_patients",
        "v_ranked_staff",
        "v_newest_staff_per_department",
        "public.v_patient_summary",
        "patients",
    ]
    assert reasons_of(backup_role_dsn, fixed) == {}


def test_preflight_refuses_the_view_in_one_line_naming_it_and_the_way_out(backup_role_dsn: str) -> None:
    with psycopg.connect(backup_role_dsn) as conn, conn.cursor() as cursor:
        refuse_nondeterministic_views(cursor, HMS_VIEWS)  # no refusal
        with pytest.raises(PreflightFailed) as caught:
            refuse_nondeterministic_views(cursor, [*HMS_VIEWS, "v_staff_names"])
    error = caught.value
    assert error.message.startswith(
        "baseline view v_staff_names does not return fixed rows: it aggregates with string_agg()"
    )
    assert "\n" not in error.message
    assert error.hint and "ORDER BY inside the aggregate" in error.hint and "per-table content digests" in error.hint


def test_the_hms_views_fingerprint_alike_under_two_plans(backup_role_dsn: str) -> None:
    with psycopg.connect(backup_role_dsn) as conn:
        for view in HMS_VIEWS:
            first, second = fingerprints_under_two_plans(conn, "public", view)
            assert first == second, view
