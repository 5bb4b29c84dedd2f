"""hms_integrity_check through Airflow (runbook scenario 3's detection).

On the sandbox's production database the check passes, read-only, and stores its report. On a
COPY of it (pg_basebackup into a throw-away cluster; the sandbox primary other tests use is never
damaged), bytes in the middle of a page of an index and of a table are overwritten with the
server stopped: the check fails naming both relations, the alert e-mail carries them and the
hms_dr_restore conf that would repair their tables, and the stored report says the same. A
database without amcheck is refused with the command that installs it.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from hms_dr.errors import PreflightFailed
from hms_dr.integrity import check_amcheck_ready
from hms_dr.pgtools import ConnectionInfo
from hms_sandbox.cluster import LocalCluster, free_port, prepare_server_dir, run_server_tool
from hms_sandbox.smtpsink import mail_dir

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.pg_majors(15, 18)]

DAG_ID = "hms_integrity_check"
PAGE = 8192


def copy_of_production(sandbox: Any, home: Path) -> LocalCluster:
    """A throw-away physical copy of the sandbox cluster (same roles, passwords and amcheck grants),
    never archiving, on a port of its own."""
    copy = LocalCluster(home / "data", free_port(), home / "log" / "server.log", home / "sockets")
    for directory in (copy.data_dir, copy.log_file.parent, copy.socket_directory):
        prepare_server_dir(directory, 0o700)
    run_server_tool(
        [
            sandbox.cluster().pg.program("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(sandbox.pg_port),
            "-U",
            "hms_replica",
            "-D",
            str(copy.data_dir),
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-password",
        ],
        env={"PGPASSWORD": sandbox.secrets.role_passwords["hms_replica"]},
        timeout_s=300,
    )
    with (copy.data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"port = {copy.port}\nunix_socket_directories = '{copy.socket_directory}'\narchive_mode = off\n")
    copy.start()
    return copy


def sql(cluster: LocalCluster, sandbox: Any, query: str, database: str | None = None) -> Any:
    import psycopg

    with psycopg.connect(
        cluster.dsn("postgres", sandbox.secrets.role_passwords["postgres"], database or sandbox.database),
        autocommit=True,
    ) as conn:
        cursor = conn.execute(query)  # type: ignore[arg-type]
        row = cursor.fetchone() if cursor.description else None
    return None if row is None else row[0]


def overwrite_middle_of_page(data_dir: Path, relation_file: str, block: int) -> None:
    """Garbage in the middle of one 8 kB page, as a failing disk or controller would leave it."""
    with (data_dir / relation_file).open("r+b") as handle:
        handle.seek(block * PAGE + PAGE // 2)
        handle.write(b"\xde\xad\xbe\xef" * 16)


def connection_env(sandbox: Any, port: int) -> dict[str, str]:
    """hms_postgres pointed at ``port``: the backup role, as in production."""
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": port,
        "login": "hms_backup",
        "password": sandbox.secrets.role_passwords["hms_backup"],
        "schema": sandbox.database,
    }
    return {"AIRFLOW_CONN_HMS_POSTGRES": json.dumps(conn)}


def stored_report(primary_store: Any, output: str) -> dict[str, Any]:
    found = re.search(r"integrity report: s3://[^/]+/(\S+/integrity/\d{8}T\d{6}Z/report\.json)", output)
    assert found, output[-4000:]
    return json.loads(primary_store.get_bytes(found.group(1)))


@pytest.fixture(scope="module")
def corrupted(sandbox: Any) -> Iterator[LocalCluster]:
    home = Path(sandbox.state_dir).parent / f"integrity-{uuid.uuid4().hex[:6]}"
    copy = copy_of_production(sandbox, home)
    try:
        index_file = str(sql(copy, sandbox, "SELECT pg_relation_filepath('appointments_pkey')"))
        table_file = str(sql(copy, sandbox, "SELECT pg_relation_filepath('wards')"))
        copy.stop("fast")
        overwrite_middle_of_page(copy.data_dir, index_file, block=1)
        overwrite_middle_of_page(copy.data_dir, table_file, block=0)
        copy.start()
        yield copy
    finally:
        copy.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


def test_production_passes_read_only_and_the_report_is_stored(dag_runner: Any, primary_store: Any) -> None:
    outcome = dag_runner.run(DAG_ID, name="integrity")
    assert outcome.state == "success", outcome.output[-6000:]
    assert outcome.task_states == {
        "check_amcheck_installed": "success",
        "run_pg_amcheck": "success",
        "judge_integrity": "success",
    }
    report = stored_report(primary_store, outcome.output)
    assert report["status"] == "clean" and report["findings"] == [] and report["relations_checked"] > 50
    assert "--heapallindexed" in report["pg_amcheck"]["argv"]
    assert not {"--parent-check", "--rootdescend", "--install-missing"} & set(report["pg_amcheck"]["argv"])
    assert "CLEAN" in outcome.output


def test_a_corrupt_index_and_table_fail_the_check_naming_them_with_the_repair(
    corrupted: LocalCluster, sandbox: Any, dag_runner: Any, primary_store: Any
) -> None:
    mails = mail_dir(Path(sandbox.state_dir))
    seen = {p.name for p in mails.glob("*.eml")}
    outcome = dag_runner.run(DAG_ID, name="integrity", env=connection_env(sandbox, corrupted.port))
    assert outcome.state == "failed"
    assert outcome.task_states == {
        "check_amcheck_installed": "success",
        "run_pg_amcheck": "success",
        "judge_integrity": "failed",
    }
    # The table's unreadable page also fails its indexes' heapallindexed checks: they are named too.
    failure = next(
        line for line in outcome.output.splitlines() if "CorruptionFound: pg_amcheck found corruption in" in line
    )
    assert "of hospital_management: public.appointments_pkey (of public.appointments), " in failure
    assert "public.wards," in failure or failure.rstrip().endswith("public.wards") or "public.wards " in failure

    report = stored_report(primary_store, outcome.output)
    assert report["status"] == "corrupt"
    assert {"public.appointments_pkey", "public.wards"} <= set(report["corrupt_relations"])
    assert {f["table"] for f in report["findings"]} == {"public.appointments", "public.wards"}
    assert report["repair"]["index_only"] == ["REINDEX INDEX CONCURRENTLY public.appointments_pkey;"]
    conf = report["repair"]["conf"]
    assert report["repair"]["dag_id"] == "hms_dr_restore"
    assert (
        conf["source"] == "logical_backup" and conf["backup_id"] == "latest" and conf["target_kind"] == "staging_schema"
    )
    assert sorted(conf["tables"]) == ["appointments", "wards"] and conf["swap_into_production"] is True
    assert conf["staging_schema"].startswith("dr_") and report["report_id"] in conf["reason"]
    hinted = re.search(r"HINT: trigger hms_dr_restore with conf (\{.*?\}) \[", outcome.output)
    assert hinted and json.loads(hinted.group(1)) == conf

    alerts = []
    for path in sorted(mails.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if path.name not in seen and message["X-HMS-DR-DAG"] == DAG_ID:
            alerts.append(message)
    assert len(alerts) == 1
    text = str(alerts[0].get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    assert "public.appointments_pkey" in text and "public.wards" in text and '"tables":["appointments","wards"]' in text


def test_a_database_without_amcheck_is_refused_with_how_to_install_it(corrupted: LocalCluster, sandbox: Any) -> None:
    sql(corrupted, sandbox, "CREATE DATABASE no_amcheck", database="postgres")
    conn = ConnectionInfo(
        "127.0.0.1", corrupted.port, "hms_backup", "no_amcheck", password=sandbox.secrets.role_passwords["hms_backup"]
    )
    with pytest.raises(
        PreflightFailed, match="pg_amcheck cannot check no_amcheck: the amcheck extension is not installed"
    ) as caught:
        check_amcheck_ready(conn)
    assert caught.value.hint and "include/sql/integrity/install_amcheck.sql" in caught.value.hint
