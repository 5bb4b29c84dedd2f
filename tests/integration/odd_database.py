"""A database nobody at the hospital wrote (tests/integration/odd_schema.sql), and a policy that
names its odd objects the way SQL spells them: for tests that back it up, restore-test it and
DR-restore from it, and for tests that doctor a restore of it and expect a check to name the object.

``create_odd_database(superuser_dsn, name)`` loads it into a new database of that cluster, with a
backup role that holds pg_read_all_data and a large object owned by another role and granted to
the backup role (pg_read_all_data does not cover large objects). ``odd_policy`` is the repository's
policy pointed at it. Roles are per cluster: two odd databases on one cluster share them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hms_dr.crypto import DecryptionKey, EncryptionKey
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import EncryptionMode, Policy, load_policy

SCHEMA_SQL = Path(__file__).with_name("odd_schema.sql")
REPO_POLICY = Path(__file__).resolve().parents[2] / "include" / "policy.yaml"
BACKUP_ROLE = "odd_backup"
LARGE_OBJECT_OWNER = "odd_owner"
LARGE_OBJECT_BYTES = b"%PDF-1.4 scanned consent form, page 1 of 1\x00\xff"

# What the policy names, spelt as an operator would write it in the YAML.
BASELINE_VIEWS = ("paid_orders", "sales.readings_by_region", 'public."MixedCase"')  # a view, a matview, a table
DATA_ONLY_TABLES = ("sales.measurements", 'public."Order Details"', '"MixedCase"')  # partitioned, spaced, mixed case

# Keys of the tables in the baselines (schema.name as the catalog spells them).
PARTITIONED = "sales.measurements"
LEAF_PARTITIONS = ("sales.measurements_2024", "sales.measurements_2025 North", "sales.measurements_2025_south")
SPACED = "public.Order Details"
MIXED_CASE = "public.MixedCase"
WITHOUT_PRIMARY_KEY = "sales.events"
IN_ODD_SCHEMA = "Audit Trail.Entries"


@dataclass(frozen=True)
class OddDatabase:
    name: str
    superuser_dsn: str  # of this database
    backup: ConnectionInfo  # the backup role, as the daily backup logs in
    large_object_oid: int


def create_odd_database(superuser_dsn: str, name: str) -> OddDatabase:
    """A new database ``name`` holding odd_schema.sql's objects and one large object."""
    backup_password = secrets.token_urlsafe(18)
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        for role in (BACKUP_ROLE, LARGE_OBJECT_OWNER):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(BACKUP_ROLE), sql.Literal(backup_password))
        )
        admin.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(BACKUP_ROLE)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    dsn = make_conninfo(superuser_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL.read_text())  # type: ignore[arg-type]  # the test's own fixed SQL
        large_object_oid = create_large_object(conn, LARGE_OBJECT_BYTES)
        conn.execute(
            sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO {}").format(
                sql.Literal(large_object_oid), sql.Identifier(BACKUP_ROLE)
            )
        )
    params = conninfo_to_dict(superuser_dsn)
    backup = ConnectionInfo(
        str(params.get("host", "127.0.0.1")), int(params.get("port", 5432)), BACKUP_ROLE, name, backup_password
    )
    return OddDatabase(name, dsn, backup, large_object_oid)


def create_large_object(conn: psycopg.Connection, data: bytes) -> int:
    """A large object owned by LARGE_OBJECT_OWNER (the backup role cannot read it ungranted)."""
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(LARGE_OBJECT_OWNER)))
    try:
        row = conn.execute("SELECT lo_from_bytea(0, %s)", (data,)).fetchone()
    finally:
        conn.execute("RESET ROLE")
    assert row is not None
    return int(row[0])


def odd_policy(*, cluster_name: str, database: str, store_url: str, staging_dir: Path) -> Policy:
    """The repository's policy, for the odd database: its odd names in baseline_views and
    data_only_tables, a store of the test's own, symmetric encryption (no key pair to make).

    Built with ``replace`` on the loaded policy: the names are put in as the YAML would hold them.
    """
    policy = load_policy(REPO_POLICY)
    return replace(
        policy,
        cluster=replace(policy.cluster, name=cluster_name, database=database),
        store=replace(policy.store, primary_url=store_url),
        staging=replace(policy.staging, dir=staging_dir, min_free_mib=1),
        encryption=replace(policy.encryption, mode=EncryptionMode.SYMMETRIC, key_id="symmetric"),
        logical_backup=replace(
            policy.logical_backup, schemas=(), baseline_views=BASELINE_VIEWS, data_only_tables=DATA_ONLY_TABLES
        ),
    )


def symmetric_keys() -> tuple[EncryptionKey, DecryptionKey]:
    passphrase = secrets.token_urlsafe(24)
    return (
        EncryptionKey(EncryptionMode.SYMMETRIC, "symmetric", passphrase=passphrase),
        DecryptionKey(EncryptionMode.SYMMETRIC, passphrase=passphrase),
    )
