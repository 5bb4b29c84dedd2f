"""The HMS demo database: a synthetic, deterministic Hospital Management System that the demo,
the tests and the benchmarks back up and restore. This module creates its roles, database,
schema, data (sized by ``scale_mb``), constraints and views from the files in ``include/sql/hms``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hms_dr.errors import DatabaseUnavailable, ParamInvalid, PreflightFailed

log = logging.getLogger(__name__)

SQL_DIR: Path = Path(__file__).resolve().parents[2] / "include" / "sql" / "hms"

ROLES: tuple[str, ...] = ("hms_admin", "hms_backup", "hms_replica")
TABLES: tuple[str, ...] = (
    "departments",
    "wards",
    "diagnoses",
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
VIEWS: tuple[str, ...] = ("v_patient_summary", "v_department_census", "v_outstanding_invoices")
# Order matters: keys and foreign keys are added after the bulk load, views last.
LOAD_FILES: tuple[str, ...] = ("schema.sql", "generate.sql", "constraints.sql", "views.sql")

_OWNER = "hms_admin"
_SCALE_COMMENT = re.compile(r"scale_mb=([0-9]+(?:\.[0-9]+)?)")
# Session settings for the load transaction: durability is not needed until COMMIT, and the
# generator's plans must not depend on the caller's environment.
_LOAD_SETTINGS: tuple[tuple[str, str], ...] = (
    ("synchronous_commit", "off"),
    ("maintenance_work_mem", "512MB"),
    ("work_mem", "256MB"),
    ("jit", "off"),
    ("TimeZone", "UTC"),
    ("synchronize_seqscans", "off"),
)


def run_sql_file(conn: psycopg.Connection[Any], path: Path) -> None:
    """Execute every statement of an SQL file (no parameters, so psycopg sends it as one simple query)."""
    started = time.monotonic()
    conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]  # trusted file, not user input
    log.info("ran %s in %.1f s", path.name, time.monotonic() - started)


def create_hms_database(
    superuser_dsn: str,
    *,
    database: str = "hospital_management",
    scale_mb: float = 50,
    passwords: Mapping[str, str],
) -> dict[str, Any]:
    """Create the HMS roles and database and load it at ``scale_mb``; a loaded database is left as it is.

    :param superuser_dsn: libpq connection string to the cluster's ``postgres`` database as a superuser.
    :param passwords: login passwords for ``hms_admin``, ``hms_backup`` and ``hms_replica``.
    :returns: ``database``, ``scale_mb``, ``size_bytes``, ``row_counts``, ``load_seconds`` and ``loaded``
        (False when the database already held the HMS tables and nothing was loaded).
    """
    missing = [role for role in ROLES if not passwords.get(role)]
    if missing:
        raise ParamInvalid(f"no password given for HMS role(s) {', '.join(missing)}")
    if not scale_mb > 0:
        raise ParamInvalid(f"scale_mb must be positive, got {scale_mb!r}")
    if not database or len(database) > 63:
        raise ParamInvalid(f"database name {database!r} must be 1-63 characters")

    with _connect(superuser_dsn) as admin:
        run_sql_file(admin, SQL_DIR / "roles.sql")
        _set_passwords(admin, passwords)
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            log.info("creating database %s owned by %s", database, _OWNER)
            admin.execute(
                sql.SQL(
                    "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
                ).format(sql.Identifier(database), sql.Identifier(_OWNER))
            )

    with _connect(make_conninfo(superuser_dsn, dbname=database)) as conn:
        present = _present_relations(conn)
        if present >= set(TABLES) | set(VIEWS):
            log.info("database %s already holds the HMS schema and data; not reloading", database)
            return _summary(conn, database, _loaded_scale(conn, database), load_seconds=0.0, loaded=False)
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        if owner is None or owner[0] != _OWNER:
            raise PreflightFailed(
                f"database {database} is owned by {owner[0] if owner else '?'}, not {_OWNER}; refusing to load into it",
                hint=f"ALTER DATABASE {database} OWNER TO {_OWNER}, or choose another database name",
            )
        if present:
            raise PreflightFailed(
                f"database {database} holds only part of the HMS schema ({len(present)} of "
                f"{len(TABLES) + len(VIEWS)} relations); refusing to load over it",
                hint=f"drop it first, e.g. drop_hms_database(dsn, {database!r})",
            )
        load_seconds = _load(conn, database, scale_mb)
        summary = _summary(conn, database, scale_mb, load_seconds=load_seconds, loaded=True)
    log.info(
        "loaded %s at scale %s MB: %.1f MB in %.1f s (%.1f MB/s)",
        database,
        scale_mb,
        summary["size_bytes"] / 2**20,
        load_seconds,
        summary["size_bytes"] / 2**20 / max(load_seconds, 1e-6),
    )
    return summary


def drop_hms_database(superuser_dsn: str, database: str) -> None:
    """Drop the HMS database (disconnecting its sessions); the cluster-wide roles are kept."""
    with _connect(superuser_dsn) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    log.info("dropped database %s", database)


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        where = conninfo_to_dict(dsn)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {where.get('host', 'local socket')}:{where.get('port', 5432)} "
            f"database {where.get('dbname', '?')} as {where.get('user', '?')}: {first_line}"
        ) from exc
    conn.add_notice_handler(lambda diag: log.debug("server notice: %s", diag.message_primary))
    return conn


def _set_passwords(conn: psycopg.Connection[Any], passwords: Mapping[str, str]) -> None:
    # The client hashes each password (SCRAM, or the server's password_encryption) so the
    # plain text never reaches the server, its statement log or pg_stat_activity.
    for role in ROLES:
        verifier = conn.pgconn.encrypt_password(passwords[role].encode(), role.encode(), None).decode()
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
    log.info("set login passwords of %s", ", ".join(ROLES))


def _present_relations(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') AND c.relname = ANY(%s)",
        [list(TABLES + VIEWS)],
    ).fetchall()
    return {row[0] for row in rows}


def _load(conn: psycopg.Connection[Any], database: str, scale_mb: float) -> float:
    started = time.monotonic()
    log.info("loading HMS schema and data into %s at scale %s MB", database, scale_mb)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(_OWNER)))
        for name, value in _LOAD_SETTINGS:
            conn.execute("SELECT set_config(%s, %s, true)", [name, value])
        conn.execute("SELECT set_config('hms.scale_mb', %s, true)", [_scale_text(scale_mb)])
        for name in LOAD_FILES:
            run_sql_file(conn, SQL_DIR / name)
        # Inside the load transaction: the rows are still our own, so ANALYZE sets no hint bits
        # (with data checksums every hint-bit write would be a full-page image in the WAL).
        analyze_started = time.monotonic()
        conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)))
        log.info("analyzed %s in %.1f s", database, time.monotonic() - analyze_started)
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(database),
                sql.Literal(f"HMS synthetic demo data (no real patients), scale_mb={_scale_text(scale_mb)}"),
            )
        )
    return time.monotonic() - started


def _scale_text(scale_mb: float) -> str:
    return f"{float(scale_mb):g}"


def _loaded_scale(conn: psycopg.Connection[Any], database: str) -> float | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [database]
    ).fetchone()
    match = _SCALE_COMMENT.search(row[0] or "") if row else None
    return float(match.group(1)) if match else None


def _summary(
    conn: psycopg.Connection[Any], database: str, scale_mb: float | None, *, load_seconds: float, loaded: bool
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for table in TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))).fetchone()
        counts[table] = int(row[0]) if row else 0
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return {
        "database": database,
        "scale_mb": scale_mb,
        "size_bytes": int(size[0]) if size else 0,
        "row_counts": counts,
        "load_seconds": round(load_seconds, 2),
        "loaded": loaded,
    }
