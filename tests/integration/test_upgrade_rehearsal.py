"""The upgrade rehearsal through Airflow: the sandbox's daily set, taken from PostgreSQL 15, restored
by hms_restore_test (upgrade_rehearsal=true) into a PostgreSQL 18 server of its own, passes every
check against the unchanged baselines (content digests included) and says "PostgreSQL 15.x → 18.y";
the scratch database is created and dropped on the 18 server, never on the normal restore target.
A rehearsal server of the set's own major is refused in one line before anything is downloaded.
The odd database (odd_schema.sql: partitions, an enum, a domain, jsonb, a materialized view, a
large object, odd names), backed up from a 15 cluster, restores into 18 with every check exact too:
the engine, directly, as the rehearsal's tasks call it.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from odd_database import LEAF_PARTITIONS, SPACED, create_odd_database, odd_policy, symmetric_keys
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hms_dr import restore
from hms_dr.catalog import find_set
from hms_dr.logical import publish_logical_sets, take_logical_backup
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.quality import check_restored_database
from hms_dr.scratch.database import (
    ScratchDatabaseKind,
    create_scratch_database,
    drop_scratch_database,
    scratch_database_name,
)
from hms_dr.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"
DAG_ID = "hms_restore_test"
REHEARSAL_CONN_ID = "hms_upgrade_rehearsal"
REHEARSAL_POLICY = {"restore_test.upgrade_rehearsal_connection_id": REHEARSAL_CONN_ID}


@dataclass(frozen=True)
class RehearsalServer:
    """The PostgreSQL 18 server the rehearsal restores into, and its Airflow Connection."""

    dsn: str
    version: str  # "18.6"
    log_file: Path
    env: dict[str, str]  # AIRFLOW_CONN_HMS_UPGRADE_REHEARSAL


@pytest.fixture(scope="module")
def rehearsal_server(sandbox: Any) -> Iterator[RehearsalServer]:
    """A throw-away PostgreSQL 18 cluster beside the sandbox, superuser login by scram password;
    its server log records every DDL statement, so the test sees where the scratch database went."""
    from hms_sandbox.cluster import SUPERUSER, LocalCluster, free_port

    base = Path(sandbox.state_dir).parent / f"rehearsal18-{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster(base / "data", free_port(), base / "log" / "server.log", base / "sockets", major=18)
    password = secrets.token_urlsafe(24)
    cluster.init(password, data_checksums=False, conf={"fsync": "off", "log_statement": "ddl"})
    cluster.start()
    try:
        dsn = cluster.dsn(SUPERUSER, password)
        with psycopg.connect(dsn) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        connection = {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": cluster.port,
            "login": SUPERUSER,
            "password": password,
            "schema": "postgres",
        }
        env = {f"AIRFLOW_CONN_{REHEARSAL_CONN_ID.upper()}": json.dumps(connection)}
        yield RehearsalServer(dsn, version, cluster.log_file, env)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def daily_set(dag_runner: Any, primary_store: Any) -> Any:
    outcome = dag_runner.run("hms_daily_logical_backup")
    assert outcome.state == "success", outcome.output[-4000:]
    return find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest")


def restore_test_databases(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'hms_restore_test_%'").fetchall()
    return [r[0] for r in rows]


def restore_target_dsn(sandbox: Any) -> str:
    password = sandbox.secrets.role_passwords["restore_target_postgres"]
    return f"host=127.0.0.1 port={sandbox.restore_target_port} user=postgres password={password} dbname=postgres"


def stored_report(store: Any, name: str) -> bytes:
    summaries = sorted(o.key for o in store.list(f"{CLUSTER}/restore-test/") if o.key.endswith("/summary.json"))
    return bytes(store.get_bytes(summaries[-1].rsplit("/", 1)[0] + "/" + name))


def test_a_15_set_restores_into_18_with_every_baseline_exact(
    dag_runner: Any, daily_set: Any, rehearsal_server: RehearsalServer, primary_store: Any, sandbox: Any
) -> None:
    set_version = str(daily_set.manifest.body["server"]["version"]).split()[0]
    assert set_version.startswith("15.") and rehearsal_server.version.startswith("18.")
    outcome = dag_runner.run(
        DAG_ID,
        policy=REHEARSAL_POLICY,
        env=rehearsal_server.env,
        conf={"mode": "logical", "backup_id": daily_set.backup_set_id, "upgrade_rehearsal": True},
        name="rehearsal",
    )
    assert outcome.state == "success", outcome.output[-6000:]
    rehearsal = f"PostgreSQL {set_version} → {rehearsal_server.version}"

    summary = json.loads(stored_report(primary_store, "summary.json"))
    assert summary["backup_set_id"] == daily_set.backup_set_id
    assert summary["passed"] is True and summary["failed"] == []
    assert summary["upgrade_rehearsal"] == rehearsal
    assert f"upgrade rehearsal: {rehearsal}" in stored_report(primary_store, "report.html").decode()
    returned = dag_runner.returned(DAG_ID, outcome.run_id, "check_against_baselines")
    assert returned["upgrade_rehearsal"] == rehearsal and returned["passed"] is True
    plan = dag_runner.returned(DAG_ID, outcome.run_id, "choose_backup_set")
    assert plan["upgrade_rehearsal"] == {
        "connection_id": REHEARSAL_CONN_ID,
        "from_version": set_version,
        "to_version": rehearsal_server.version,
    }

    # Every baseline was checked, not only some: each table's rows and content digest, the views.
    baselines = daily_set.manifest.baselines
    by_kind: dict[str, set[str]] = {}
    for check in summary["checks"]:
        assert check["passed"], check
        by_kind.setdefault(check["check"], set()).add(check["target"])
    assert set(baselines["tables"]) <= by_kind["row_count"]
    assert set(baselines["views"]) <= by_kind["view_rows"]
    assert set(baselines["tables"]) <= by_kind["table_content"]

    # The scratch database was created, restored into and dropped on the 18 server (its DDL log
    # says so), and none is left there or on the normal restore target.
    scratch = plan["scratch_database"]
    server_log = rehearsal_server.log_file.read_text(errors="replace")
    for statement in ("CREATE DATABASE", "DROP DATABASE IF EXISTS"):
        assert re.search(rf'statement: {statement} "?{scratch}"?', server_log), f"no {statement} {scratch} on 18"
    assert restore_test_databases(rehearsal_server.dsn) == []
    assert restore_test_databases(restore_target_dsn(sandbox)) == []


def test_the_odd_database_of_a_15_cluster_restores_into_18_with_every_check_exact(
    scratch_cluster: str, rehearsal_server: RehearsalServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    odd = create_odd_database(scratch_cluster, "odd_rehearsal")
    workdir = tmp_path_factory.mktemp("odd-rehearsal")
    policy = odd_policy(
        cluster_name="odd-rehearsal",
        database=odd.name,
        store_url=f"file://{workdir / 'store'}",
        staging_dir=workdir / "staging",
    )
    (workdir / "store").mkdir()
    store = open_store(policy.store.primary_url)
    encryption, decryption = symmetric_keys()
    result = take_logical_backup(
        odd.backup,
        store,
        encryption,
        cluster=policy.cluster.name,
        logical_backup=policy.logical_backup,
        compression=policy.compression,
        staging=policy.staging,
    )
    publish_logical_sets(store, result, {"dag_id": "test", "run_id": "odd rehearsal"})
    backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, result.backup_set_id)
    assert str(backup_set.manifest.body["server"]["version"]).startswith("15.")

    fetched = restore.fetch_for_restore(store, backup_set, decryption, workdir / "fetch")
    params = conninfo_to_dict(rehearsal_server.dsn)
    admin = ConnectionInfo(
        str(params["host"]), int(str(params["port"])), str(params["user"]), "postgres", str(params["password"])
    )
    scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "odd18")
    create_scratch_database(admin, scratch)
    try:
        restore.run_pg_restore(admin.with_database(scratch), fetched.path, jobs=2)
        restored_dsn = make_conninfo(rehearsal_server.dsn, dbname=scratch)
        summary = check_restored_database(
            restored_dsn,
            backup_set.manifest.baselines,
            report_dir=workdir / "report",
            backup_set_id=backup_set.backup_set_id,
            smoke_queries=(),
        )
        # Not vacuous on 18: one value changed in one row (same row count, in no baseline view)
        # fails exactly that table's content digest.
        with psycopg.connect(restored_dsn, autocommit=True) as conn:
            changed = conn.execute("UPDATE sales.events SET detail = '{\"n\": -1}' WHERE detail = '{\"n\": 1}'")
            assert changed.rowcount == 1
        doctored = check_restored_database(
            restored_dsn,
            backup_set.manifest.baselines,
            report_dir=workdir / "report-doctored",
            backup_set_id=backup_set.backup_set_id,
            smoke_queries=(),
        )
    finally:
        drop_scratch_database(admin, scratch)
        fetched.path.unlink(missing_ok=True)
    assert summary["failed"] == [] and summary["passed"]
    by_kind: dict[str, set[str]] = {}
    for check in summary["checks"]:
        by_kind.setdefault(check["check"], set()).add(check["target"])
    tables = set(backup_set.manifest.baselines["tables"])
    assert {SPACED, *LEAF_PARTITIONS} <= tables
    assert tables <= by_kind["row_count"] and by_kind["large_objects"]
    assert {t for t in tables if backup_set.manifest.baselines["tables"][t].get("relkind") != "p"} <= by_kind[
        "table_content"
    ]
    failed = [(c["check"], c["target"]) for c in doctored["checks"] if not c["passed"]]
    assert failed == [("table_content", "sales.events")], doctored["failed"]


def test_a_rehearsal_without_its_server_is_refused_before_anything_is_downloaded(
    dag_runner: Any, daily_set: Any
) -> None:
    # Through Airflow's own Connection lookup; an unset policy key is refused the same way
    # (tests/unit/restore_test/test_upgrade_rehearsal.py), without a DAG run of its own here.
    refusal = "upgrade_rehearsal: Airflow connection 'hms_no_such_server' is not defined"
    outcome = dag_runner.run(
        DAG_ID,
        policy={"restore_test.upgrade_rehearsal_connection_id": "hms_no_such_server"},
        conf={"mode": "logical", "backup_id": daily_set.backup_set_id, "upgrade_rehearsal": True},
        name="rehearsal-without-server",
    )
    assert outcome.state == "failed"
    assert outcome.task_states["choose_backup_set"] == "failed"
    assert outcome.task_states["restore_into_scratch"] == "upstream_failed"  # nothing was downloaded
    assert refusal in outcome.output
