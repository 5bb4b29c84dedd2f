"""Test-side restore: fetch a set's payload (sha256-checked, decrypted), pg_restore it into a new
empty database, and measure that database the way the backup measured production."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg

from hms_dr import baseline
from hms_dr.catalog import BackupSet
from hms_dr.pginstalls import PgInstall, client_install
from hms_dr.restore import fetch_for_restore


def programs_for(dsn: str) -> PgInstall:
    """The client programs hms-dr would choose for the server ``dsn`` reaches (its major or newer)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return client_install(row[0] // 10000)


def fetch_plain(store: Any, backup_set: BackupSet, restore_key: Any, workdir: Path) -> Path:
    """The set's payload, proven against its manifest, decrypted and decompressed (engine code)."""
    return fetch_for_restore(store, backup_set, restore_key, workdir).path


def restore_into_new_database(sandbox: Any, archive: Path) -> str:
    """pg_restore the archive into a fresh database owned by hms_admin; returns its name."""
    name = f"restored_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER hms_admin')
    dsn = sandbox.superuser_dsn(name)
    done = subprocess.run(
        [programs_for(dsn).program("pg_restore"), "--exit-on-error", "-j", "2", "-d", dsn, str(archive)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return name


def observed_baselines(sandbox: Any, database: str, expected: dict[str, Any]) -> dict[str, Any]:
    views = [tuple(name.split(".", 1)) for name in expected.get("views", {})]
    with psycopg.connect(sandbox.superuser_dsn(database)) as conn, conn.cursor() as cursor:
        baseline.apply_fingerprint_settings(cursor)
        tables = baseline.list_tables(cursor, [])
        return baseline.measure(cursor, tables, views)


def drop_database(sandbox: Any, name: str) -> None:
    with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
