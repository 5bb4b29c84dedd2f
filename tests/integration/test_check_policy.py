"""`python -m hms_dr.tasks.check_policy` against live databases: green on the sandbox's HMS
database (through the policy's Airflow Connections), and on a database of someone else's with a
backup role lacking its grants it names each problem and the exact GRANT, then turns green once
those GRANTs are run."""

from __future__ import annotations

import copy
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.conninfo import make_conninfo

from hms_dr.policy import DEFAULT_POLICY_PATH
from hms_sandbox.airflow_env import build_airflow_env

pytestmark = pytest.mark.integration

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
DATABASE = "shop"
ROLE = "shop_backup"
PASSWORD = secrets.token_urlsafe(18)  # the throw-away role's, new each run: no literal secret in the code


def check_policy(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "hms_dr.tasks.check_policy", *args],
        env={**os.environ, **(env or {}), "PYTHONPATH": str(PLUGINS)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not done.stderr.strip() or "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.splitlines()


def lines_starting(lines: list[str], prefix: str) -> list[str]:
    return [line for line in lines if line.startswith(prefix)]


def test_the_sandbox_policy_is_green_on_the_hms_database(sandbox: Any) -> None:
    code, lines = check_policy(env=build_airflow_env(sandbox))
    assert code == 0, "\n".join(lines)
    assert lines_starting(lines, "PROBLEM") == []
    for subject in (
        "connection:",
        "logical_backup.format: custom (pg_dump -Fc): the database's",
        "tables in scope:",
        "large objects:",
        "logical_backup.data_only_tables: appointments is public.appointments",
        "baseline view v_patient_summary: rows fixed by the data",
        "smoke query 'count of patients': ran read-only and returned 1 row(s)",
        "smoke query 'first patient summaries': ran read-only and returned 5 row(s)",
        "wal_level:",
        "archive_mode",
        "archive_command:",
        "WAL archiver:",
        "base backups: hms_replica may stream a base backup",
        "base_backup.incremental: off: every base backup is a full one",
        "cluster.name:",
    ):
        assert any(line.startswith("OK") and subject in line for line in lines), (subject, lines)


def test_incremental_base_backups_asked_of_the_15_sandbox_are_a_problem_with_the_fix(
    sandbox: Any, tmp_path: Path
) -> None:
    env = build_airflow_env(sandbox)
    policy = yaml.safe_load(Path(env["HMS_DR_POLICY"]).read_text())
    policy["base_backup"]["incremental"] = True
    variant = tmp_path / "policy.yaml"
    variant.write_text(yaml.safe_dump(policy))
    code, lines = check_policy(env={**env, "HMS_DR_POLICY": str(variant)})
    assert code == 1, "\n".join(lines)
    problems = lines_starting(lines, "PROBLEM")
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "PROBLEM base_backup.incremental: the policy (base_backup.incremental: true) asks for incremental base backups, "
        f"but 127.0.0.1:{sandbox.pg_port} runs PostgreSQL 15."
    ), problems
    assert "| fix: set base_backup.incremental: false in the policy" in problems[0]


@pytest.fixture(scope="module")
def shop(scratch_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A database nobody here wrote: two schemas, a spaced mixed-case table name, a large object,
    an unordered string_agg view, and a backup role with LOGIN and CONNECT only."""
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {DATABASE}")
        admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    owner = make_conninfo(scratch_cluster, dbname=DATABASE)
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')")
        conn.execute("CREATE SCHEMA sales")
        conn.execute('CREATE TABLE sales."Order Details" (id int PRIMARY KEY, customer_id int REFERENCES customers)')
        conn.execute(
            "CREATE VIEW customer_names AS SELECT count(*) AS n, string_agg(name, ', ') AS names FROM customers"
        )
        conn.execute(
            "CREATE VIEW customer_names_ordered AS SELECT string_agg(name, ', ' ORDER BY name) AS names FROM customers"
        )
        large_object = conn.execute("SELECT lo_from_bytea(0, 'scanned consent form')").fetchone()[0]  # type: ignore[index]
    policy = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    policy["cluster"]["database"] = DATABASE
    policy["logical_backup"].update(
        data_only_tables=['sales."Order Details"', "invoices"],
        baseline_views=["customer_names", "public.customer_names_ordered"],
    )
    policy["restore_test"]["smoke_queries"] = [
        {"name": "customers", "sql": "SELECT id, name FROM customers"},
        {"name": "patients", "sql": "SELECT count(*) FROM patients"},
    ]
    path = tmp_path_factory.mktemp("shop") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    params = psycopg.conninfo.conninfo_to_dict(scratch_cluster)
    url = f"postgresql://{ROLE}:{PASSWORD}@{params['host']}:{params['port']}/{DATABASE}"
    yield {"policy": str(path), "url": url, "owner": owner, "large_object": large_object}
    with psycopg.connect(scratch_cluster, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {DATABASE}")
        admin.execute(f"DROP ROLE {ROLE}")


def test_a_role_without_grants_is_told_the_exact_grants_and_every_other_problem(shop: dict[str, Any]) -> None:
    code, lines = check_policy("--policy", shop["policy"], "--dsn", shop["url"])

    assert code == 1, "\n".join(lines)
    problems = lines_starting(lines, "PROBLEM")
    expected = [
        f"PROBLEM tables in scope: backup role {ROLE} cannot read 2 relation(s): public.customers, sales.Order Details | "
        f"fix: GRANT pg_read_all_data TO {ROLE};",
        f"PROBLEM large objects: backup role {ROLE} cannot read 1 of 1 large object(s) (oid {shop['large_object']}): "
        f"pg_read_all_data does not cover large objects | fix: GRANT SELECT ON LARGE OBJECT {shop['large_object']} TO {ROLE};",
        "PROBLEM logical_backup.data_only_tables: data-only table 'invoices', named in the policy, does not exist in the database",
        "PROBLEM baseline view customer_names: baseline view customer_names does not return fixed rows: it aggregates with string_agg()",
        "PROBLEM smoke query 'customers': fails here: permission denied for table customers",
        "PROBLEM smoke query 'patients': fails here: relation \"patients\" does not exist",
        "PROBLEM archive_mode: off",
        "PROBLEM logical_backup.data_only_tables: data-only table 'sales.\"Order Details\"' cannot be looked up: permission denied for "
        "schema sales (pg_read_all_data includes USAGE on every schema) | fix: GRANT pg_read_all_data TO shop_backup;",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in problems), (start, problems)
    assert any(
        line.startswith("PROBLEM baseline view public.customer_names_ordered: cannot be read: permission denied")
        for line in lines
    )
    assert any(line.startswith("WARN    cluster.name: is still the HMS default 'hms-primary'") for line in lines)
    assert any(line.startswith("WARN    base backups: the replication role was not checked") for line in lines)
    assert PASSWORD not in "\n".join(lines)


def test_the_grants_it_names_make_the_role_green(shop: dict[str, Any]) -> None:
    _, before = check_policy("--policy", shop["policy"], "--dsn", shop["url"])
    fixes = sorted({line.split("| fix: ", 1)[1] for line in before if line.startswith("PROBLEM") and "GRANT" in line})
    assert fixes == [
        f"GRANT SELECT ON LARGE OBJECT {shop['large_object']} TO {ROLE};",
        f"GRANT pg_read_all_data TO {ROLE};",
    ]
    with psycopg.connect(shop["owner"], autocommit=True) as owner:
        for fix in fixes:
            owner.execute(fix.encode())  # the printed fix, run as written

    _, after = check_policy("--policy", shop["policy"], "--dsn", shop["url"])

    assert any(line.startswith(f"OK      tables in scope: {ROLE} reads every table") for line in after), after
    assert f"OK      large objects: {ROLE} reads all 1 large object(s)" in after
    assert "OK      smoke query 'customers': ran read-only and returned 3 row(s)" in after
    assert 'OK      logical_backup.data_only_tables: sales."Order Details" is sales.Order Details' in after
    assert any(
        line.startswith("OK      baseline view public.customer_names_ordered: rows fixed by the data") for line in after
    )
