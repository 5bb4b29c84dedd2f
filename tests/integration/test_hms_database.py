"""The synthetic HMS database loads completely, keeps its constraints, is deterministic, and gives
the backup role read access without superuser rights."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from hms_dr.errors import ParamInvalid, PreflightFailed
from hms_sandbox.hmsdb import TABLES, VIEWS, create_hms_database, drop_hms_database

pytestmark = pytest.mark.integration

SCALE_MB = 20
DATABASE = "hospital_management"
REQUIRED_TABLES = (
    "departments",
    "staff",
    "patients",
    "appointments",
    "admissions",
    "medications",
    "prescriptions",
    "billing",
    "payments",
    "audit_log",
)
# (table, column) -> referenced table: every relationship the schema promises.
EXPECTED_FOREIGN_KEYS = {
    ("departments", "head_staff_id"): "staff",
    ("wards", "department_id"): "departments",
    ("staff", "department_id"): "departments",
    ("appointments", "patient_id"): "patients",
    ("appointments", "doctor_id"): "staff",
    ("appointments", "department_id"): "departments",
    ("appointments", "diagnosis_id"): "diagnoses",
    ("admissions", "patient_id"): "patients",
    ("admissions", "attending_doctor_id"): "staff",
    ("admissions", "department_id"): "departments",
    ("admissions", "ward_id"): "wards",
    ("admissions", "primary_diagnosis_id"): "diagnoses",
    ("prescriptions", "patient_id"): "patients",
    ("prescriptions", "prescriber_id"): "staff",
    ("prescriptions", "medication_id"): "medications",
    ("prescriptions", "appointment_id"): "appointments",
    ("prescriptions", "admission_id"): "admissions",
    ("billing", "patient_id"): "patients",
    ("billing", "appointment_id"): "appointments",
    ("billing", "admission_id"): "admissions",
    ("payments", "invoice_id"): "billing",
    ("payments", "received_by_id"): "staff",
    ("audit_log", "actor_staff_id"): "staff",
}


# ---------------------------------------------------------------- HMS database under test


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {role: secrets.token_urlsafe(18) for role in ("hms_admin", "hms_backup", "hms_replica")}


@pytest.fixture(scope="module")
def hms(scratch_cluster: str, passwords: dict[str, str]) -> dict[str, object]:
    return create_hms_database(scratch_cluster, database=DATABASE, scale_mb=SCALE_MB, passwords=passwords)


@pytest.fixture()
def conn(scratch_cluster: str, hms: dict[str, object]) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(make_conninfo(scratch_cluster, dbname=DATABASE), autocommit=True) as connection:
        yield connection


def _fingerprint(conn: psycopg.Connection[tuple[object, ...]], relation: str, key: str) -> str:
    query = sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY t.{key})) FROM {rel} AS t").format(
        key=sql.Identifier(key), rel=sql.Identifier(relation)
    )
    row = conn.execute(query).fetchone()
    assert row is not None and row[0] is not None, f"{relation} is empty"
    return str(row[0])


def test_every_table_has_rows(conn: psycopg.Connection[tuple[object, ...]], hms: dict[str, object]) -> None:
    row_counts = hms["row_counts"]
    assert isinstance(row_counts, dict)
    assert set(REQUIRED_TABLES) <= set(row_counts) == set(TABLES)
    for table in TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        assert row is not None and row[0] > 0, f"{table} is empty"
        assert row[0] == row_counts[table]


def test_database_size_is_near_the_requested_scale(hms: dict[str, object]) -> None:
    size_mb = int(str(hms["size_bytes"])) / 2**20
    assert 0.75 * SCALE_MB <= size_mb <= 1.25 * SCALE_MB, f"{size_mb:.1f} MB for scale {SCALE_MB} MB"
    assert hms["database"] == DATABASE and hms["loaded"] is True


def test_foreign_keys_exist_and_are_validated(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text, c.convalidated
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
        """
    ).fetchall()
    found = {(table, column): referenced for table, column, referenced, _ in rows}
    assert found == EXPECTED_FOREIGN_KEYS
    assert [row for row in rows if not row[3]] == []


def test_every_table_has_a_primary_key(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(
        "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace"
    ).fetchall()
    assert {row[0] for row in rows} == set(TABLES)


def test_patient_summary_has_one_row_per_patient(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM patients), count(*), count(DISTINCT patient_id), "
        "       count(*) FILTER (WHERE outstanding_balance <> total_billed - total_paid) "
        "FROM v_patient_summary"
    ).fetchone()
    assert row is not None
    patients, summary_rows, distinct_patients, inconsistent = row
    assert patients == summary_rows == distinct_patients
    assert inconsistent == 0


def test_views_never_read_the_clock(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    for view in VIEWS:
        row = conn.execute("SELECT pg_get_viewdef(%s::regclass)", [view]).fetchone()
        assert row is not None
        definition = str(row[0]).lower()
        for clock in ("now()", "current_date", "current_timestamp", "localtimestamp", "clock_timestamp"):
            assert clock not in definition, f"{view} uses {clock}"


def test_same_scale_gives_identical_data_in_another_database(
    scratch_cluster: str, passwords: dict[str, str], conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    second = "hms_determinism_check"
    drop_hms_database(scratch_cluster, second)
    try:
        create_hms_database(scratch_cluster, database=second, scale_mb=SCALE_MB, passwords=passwords)
        with psycopg.connect(make_conninfo(scratch_cluster, dbname=second), autocommit=True) as other:
            for relation, key in (
                ("patients", "id"),
                ("billing", "id"),
                ("payments", "id"),
                ("audit_log", "id"),
                ("v_patient_summary", "patient_id"),
            ):
                assert _fingerprint(other, relation, key) == _fingerprint(conn, relation, key), relation
    finally:
        drop_hms_database(scratch_cluster, second)


def test_loading_again_changes_nothing_and_logs_no_password(
    scratch_cluster: str, passwords: dict[str, str], hms: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        again = create_hms_database(scratch_cluster, database=DATABASE, scale_mb=SCALE_MB, passwords=passwords)
    assert again["loaded"] is False
    assert again["row_counts"] == hms["row_counts"]
    assert again["scale_mb"] == SCALE_MB
    for password in passwords.values():
        assert password not in caplog.text


def test_roles_have_the_right_attributes(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolreplication, rolcreaterole FROM pg_roles "
        "WHERE rolname IN ('hms_admin', 'hms_backup', 'hms_replica')"
    ).fetchall()
    assert {row[0]: row[1:] for row in rows} == {
        "hms_admin": (True, False, False, False),
        "hms_backup": (True, False, False, False),
        "hms_replica": (True, False, True, False),
    }
    granted = conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "WHERE m.member = 'hms_backup'::regrole"
    ).fetchall()
    assert {row[0] for row in granted} >= {"pg_read_all_data", "pg_read_all_settings", "pg_read_all_stats"}
    owners = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v', 'S', 'i')"
    ).fetchall()
    assert owners == [("hms_admin",)]
    db_owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
    assert db_owner == ("hms_admin",)


def test_hms_backup_reads_every_table_but_is_no_superuser(
    scratch_cluster: str, passwords: dict[str, str], hms: dict[str, object]
) -> None:
    dsn = make_conninfo(scratch_cluster, user="hms_backup", password=passwords["hms_backup"], dbname=DATABASE)
    with psycopg.connect(dsn) as backup:
        assert backup.execute("SHOW is_superuser").fetchone() == ("off",)
        for relation in TABLES + VIEWS:
            row = backup.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(relation))).fetchone()
            assert row is not None and row[0] > 0, relation
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            backup.execute("DELETE FROM audit_log")
        backup.rollback()


def test_application_inserts_continue_after_the_generated_ids(
    scratch_cluster: str, passwords: dict[str, str], hms: dict[str, object]
) -> None:
    dsn = make_conninfo(scratch_cluster, user="hms_admin", password=passwords["hms_admin"], dbname=DATABASE)
    with psycopg.connect(dsn) as admin:
        for table in TABLES:
            row = admin.execute(
                sql.SQL("SELECT max(id), nextval(pg_get_serial_sequence({}, 'id')) FROM {}").format(
                    sql.Literal(table), sql.Identifier(table)
                )
            ).fetchone()
            assert row is not None and row[1] == row[0] + 1, table
        new_id = admin.execute(
            "INSERT INTO patients (mrn, first_name, last_name, date_of_birth, sex) "
            "VALUES ('MRN-TEST-1', 'Zoë', 'Test', '1990-01-01', 'F') RETURNING id"
        ).fetchone()
        max_before = hms["row_counts"]
        assert isinstance(max_before, dict) and new_id is not None and new_id[0] > max_before["patients"]
        admin.rollback()


def test_refuses_to_load_into_a_database_it_does_not_own(scratch_cluster: str, passwords: dict[str, str]) -> None:
    foreign = "hms_not_owned_by_hms_admin"
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(foreign)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER postgres").format(sql.Identifier(foreign)))
    try:
        with pytest.raises(PreflightFailed, match="owned by postgres"):
            create_hms_database(scratch_cluster, database=foreign, scale_mb=SCALE_MB, passwords=passwords)
    finally:
        drop_hms_database(scratch_cluster, foreign)


def test_missing_password_is_refused_before_touching_the_cluster() -> None:
    with pytest.raises(ParamInvalid, match="hms_replica"):
        create_hms_database("host=192.0.2.1 connect_timeout=1", passwords={"hms_admin": "a", "hms_backup": "b"})
