"""The compose HMS server's first-start scripts (deploy/hms-postgres/initdb/*.sh), run the way the
postgres image runs them — as the server user, against a socket-only server freshly made by
initdb with scram authentication — build the database the sandbox builds: WAL archived into the
spool by include/postgres/archive_wal.sh, replication for hms_replica, the three roles with
their passwords, and the same tables, rows and views as hms_sandbox.hmsdb loads."""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from workdirs import state_root

from hms_sandbox.cluster import LocalCluster, free_port, prepare_server_dir, run_server_tool
from hms_sandbox.hmsdb import TABLES, VIEWS, create_hms_database

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
INITDB_DIR = REPO_ROOT / "deploy" / "hms-postgres" / "initdb"
SCALE_MB = "5"
DATABASE = "hospital_management"


@dataclass
class InitializedServer:
    cluster: LocalCluster
    superuser_password: str
    role_passwords: dict[str, str]
    spool: Path

    def connect(self, dbname: str, user: str = "postgres", password: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.cluster.port,
            user=user,
            dbname=dbname,
            password=password or self.superuser_password,
            autocommit=True,
        )


@pytest.fixture(scope="module")
def server(worker_id: str) -> Iterator[InitializedServer]:
    # Reachable by the postgres OS user, which runs the server when the tests run as root.
    base = state_root() / f"compose-init-{worker_id}-{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster(base / "data", free_port(), base / "log" / "postgresql.log", base / "sockets")
    superuser_password = secrets.token_hex(16)
    role_passwords = {role: secrets.token_hex(16) for role in ("hms_admin", "hms_backup", "hms_replica")}
    spool = base / "wal-spool"
    # The image holds its own copies of these; so does the test, where the server's OS user can
    # read them (run as root it may not traverse the clone).
    include, initdb_dir = base / "include", base / "initdb"
    try:
        shutil.copytree(REPO_ROOT / "include", include)
        shutil.copytree(INITDB_DIR, initdb_dir)
        cluster.init(superuser_password, data_checksums=True)
        prepare_server_dir(spool, 0o700)
        cluster.start()
        env = {
            "PGDATA": str(cluster.data_dir.absolute()),
            "POSTGRES_USER": "postgres",
            "PGPASSWORD": superuser_password,
            "PGHOST": str(cluster.socket_directory.absolute()),
            "PGPORT": str(cluster.port),
            "HMS_DR_INCLUDE": str(include.absolute()),
            "HMS_WAL_SPOOL_DIR": str(spool.absolute()),
            "HMS_DATABASE": DATABASE,
            "HMS_DEMO_SCALE_MB": SCALE_MB,
            **{f"{role.upper()}_PASSWORD": password for role, password in role_passwords.items()},
        }
        for script in sorted(initdb_dir.glob("*.sh")):
            run_server_tool([script], env=env, timeout_s=600)
        cluster.stop()  # the image restarts the server after its init scripts
        cluster.start()
        yield InitializedServer(cluster, superuser_password, role_passwords, spool)
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def test_the_server_archives_wal_into_the_spool_with_checksums_on(server):
    with server.connect("postgres") as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('data_checksums', 'wal_level', 'archive_mode', 'archive_timeout', 'archive_command')"
            ).fetchall()
        )
        assert settings["data_checksums"] == "on"
        assert settings["wal_level"] == "replica"
        assert settings["archive_mode"] == "on"
        assert settings["archive_timeout"] == "60"
        assert "include/postgres/archive_wal.sh" in settings["archive_command"]
        assert str(server.spool.absolute()) in settings["archive_command"]
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    deadline = time.monotonic() + 60
    while not (server.spool / segment).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (server.spool / segment).exists(), f"{segment} never reached the spool {server.spool}"


def test_hba_lets_hms_replica_replicate_from_the_network(server):
    with server.connect("postgres") as conn:
        rules = conn.execute(
            "SELECT database, user_name, address, auth_method, error FROM pg_hba_file_rules "
            "WHERE 'hms_replica' = ANY(user_name)"
        ).fetchall()
    assert (["replication"], ["hms_replica"], "samenet", "scram-sha-256", None) in [tuple(r) for r in rules]


def test_each_role_logs_in_with_its_password(server):
    for role, password in server.role_passwords.items():
        with server.connect(DATABASE, user=role, password=password) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == role
    with pytest.raises(psycopg.OperationalError):
        server.connect(DATABASE, user="hms_backup", password=secrets.token_hex(16))


def test_the_database_matches_what_the_sandbox_loader_builds(server):
    """Same scale, same deterministic generator: the same relations, row counts and view rows."""
    twin = "hms_sandbox_twin"
    dsn = (
        f"host=127.0.0.1 port={server.cluster.port} user=postgres password={server.superuser_password} dbname=postgres"
    )
    create_hms_database(dsn, database=twin, scale_mb=float(SCALE_MB), passwords=server.role_passwords)

    def describe(dbname: str) -> dict[str, object]:
        with server.connect(dbname) as conn:
            owner, comment = conn.execute(
                "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = current_database()"
            ).fetchone()
            counts = {
                name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
                for name in TABLES + VIEWS
            }
            summary = conn.execute(
                "SELECT md5(string_agg(t::text, '|' ORDER BY t.patient_id)) FROM v_patient_summary t"
            ).fetchone()[0]
            return {"owner": owner, "comment": comment, "counts": counts, "summary": summary}

    compose_built, sandbox_built = describe(DATABASE), describe(twin)
    assert compose_built["owner"] == "hms_admin"
    assert f"scale_mb={SCALE_MB}" in str(compose_built["comment"])
    assert all(count > 0 for count in compose_built["counts"].values())  # type: ignore[union-attr]
    assert compose_built == sandbox_built
    with server.connect(DATABASE) as conn:
        reltuples = dict(
            conn.execute(
                "SELECT relname, reltuples FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            ).fetchall()
        )
    # ANALYZE ran inside the load: the planner's row estimates are filled in.
    assert all(reltuples[name] > 0 for name in TABLES), reltuples
