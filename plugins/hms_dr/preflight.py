"""Preflight of a logical backup: every precondition checked before anything is dumped.

Each failed check is one clear line naming what is wrong (the role, the table, the directory,
the bytes short); nothing in the database or the store is changed by a failed preflight.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hms_dr import sqlfiles
from hms_dr.catalog import list_catalog, preflight_prefix
from hms_dr.crypto import EncryptionKey, check_encryption_key, gpg_home
from hms_dr.database import connect
from hms_dr.errors import PreflightFailed
from hms_dr.manifest import BackupKind
from hms_dr.pginstalls import client_install
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import (
    CompressionMethod,
    CompressionPolicy,
    DumpFormat,
    EncryptionMode,
    LogicalBackupPolicy,
    StagingPolicy,
)
from hms_dr.store import Store, check_writable
from hms_dr.view_determinism import refuse_nondeterministic_views

log = logging.getLogger(__name__)

PLACEHOLDER_KEY_ID = "0" * 40
MIB = 1 << 20


@dataclass(frozen=True)
class SpaceCheck:
    """Free space needed and found in one place where the backup writes."""

    place: str
    free_bytes: int
    needed_bytes: int

    @property
    def enough(self) -> bool:
        return self.free_bytes >= self.needed_bytes


def check_space(checks: list[SpaceCheck]) -> None:
    """Raise for the first place short of space (a pure decision over measured figures)."""
    for check in checks:
        if not check.enough:
            raise PreflightFailed(
                f"not enough free space in {check.place}: {check.free_bytes / MIB:,.0f} MiB free, "
                f"{check.needed_bytes / MIB:,.0f} MiB needed",
                hint="free space there, or lower staging.min_free_mib / staging.reserve_ratio in the policy"
                " (a directory-format dump stages the database's size in staging.dir: see logical_backup.format)",
            )


def expected_set_size_bytes(previous_sizes: list[int], database_size_bytes: int) -> int:
    """What the next set will take: the largest of the last three sets, else the database size."""
    if previous_sizes:
        return max(previous_sizes[-3:])
    return database_size_bytes


def staging_needed_bytes(dump_format: DumpFormat, database_size_bytes: int) -> int:
    """What the dump itself stages on the worker: nothing for a custom-format stream; the database's
    size for a directory dump. Its -Z0 files hold every row as COPY text, without the indexes, tuple
    headers and free space the size also counts (the bench database's dump is 0.6 x its size), but
    values TOAST keeps compressed, or bytea written as hex, can outgrow their heap: then pg_dump
    fails on a full disk and the run leaves nothing behind (``hms_dr.logical.directory``)."""
    return database_size_bytes if dump_format is DumpFormat.DIRECTORY else 0


def run_preflight(
    conn: ConnectionInfo,
    store: Store,
    key: EncryptionKey,
    *,
    cluster: str,
    logical_backup: LogicalBackupPolicy,
    compression: CompressionPolicy,
    staging: StagingPolicy,
    policy_source: str = "the policy",
) -> dict[str, Any]:
    """Check connection, privileges, versions, store, space and key; return what was found.

    ``cluster`` is the policy's cluster name, the rest its sections of the same name;
    ``policy_source`` (the policy file) is named when the key is still the placeholder."""
    report: dict[str, Any] = {}
    if key.mode is EncryptionMode.PUBLIC_KEY and key.key_id == PLACEHOLDER_KEY_ID:
        raise PreflightFailed(
            f"encryption.key_id in {policy_source} is still the placeholder",
            hint="set it to the fingerprint of the hospital's backup public key",
        )
    for program in ["gpg", "gpgconf", "gpg-agent", "gpg-connect-agent"] + (
        ["zstd"] if compression.method is CompressionMethod.ZSTD else []
    ):
        if shutil.which(program) is None:
            raise PreflightFailed(f"{program} is not installed on this worker")

    schemas = list(logical_backup.schemas)
    with connect(conn) as connection, connection.cursor() as cursor:
        cursor.execute(sqlfiles.text("server_identity"))
        server_version_num, server_version, in_recovery, database, database_size, system_id = cursor.fetchone()
        server_major = server_version_num // 10000
        report["server"] = {
            "version": server_version,
            "version_num": server_version_num,
            "in_recovery": in_recovery,
            "database": database,
            "database_size_bytes": database_size,
            "system_identifier": system_id,
        }
        # The client tools of the server's major or the nearest newer: refused in one line
        # naming both versions when this worker has none that new.
        pg = client_install(server_major, server=f"the server at {conn.host}:{conn.port} ({server_version})")
        pg.program("pg_restore")  # the archive is proven readable by pg_restore of the same install
        report["tools"] = {"pg_dump": pg.version, "bin_dir": str(pg.bin_dir)}
        cursor.execute(sqlfiles.text("backup_role_attributes"))
        role, is_superuser, _, reads_all_data, reads_settings, reads_stats = cursor.fetchone()
        report["role"] = role
        if is_superuser:
            log.warning("the backup logs in as superuser %s; the runbook asks for a dedicated read-only role", role)
        missing_roles = [
            name
            for name, held in (
                ("pg_read_all_data", reads_all_data),
                ("pg_read_all_settings", reads_settings),
                ("pg_read_all_stats", reads_stats),
            )
            if not held and not is_superuser
        ]
        if missing_roles:
            log.warning("backup role %s lacks %s (the runbook's preparation checklist)", role, ", ".join(missing_roles))
        check_relations_readable(cursor, role, schemas)
        report["large_objects"] = check_large_objects_readable(cursor)
        for name in logical_backup.data_only_tables + logical_backup.baseline_views:
            cursor.execute(sqlfiles.text("resolve_relation"), {"name": name})
            if cursor.fetchone() is None:
                raise PreflightFailed(f"{name!r}, named in the policy, does not exist in database {database}")
        # A catalog query: a view the restore tests would always find changed is refused tonight.
        refuse_nondeterministic_views(cursor, logical_backup.baseline_views)

    check_writable(store, preflight_prefix(cluster))
    report["store"] = store.url

    previous = list_catalog(store, cluster, BackupKind.LOGICAL).sets
    expected = expected_set_size_bytes([s.size_bytes for s in previous], int(database_size))
    dump_format = logical_backup.dump_format_for(int(database_size))
    report["dump_format"] = dump_format.value
    spaces = [
        SpaceCheck(
            f"staging directory {staging.dir}",
            _free_bytes(staging.dir),
            staging.min_free_mib * MIB + staging_needed_bytes(dump_format, int(database_size)),
        )
    ]
    store_free = store.free_bytes()
    if store_free is not None:
        spaces.append(SpaceCheck(f"store {store.url}", store_free, int(expected * staging.reserve_ratio)))
    check_space(spaces)
    report["space"] = [{"place": s.place, "free_bytes": s.free_bytes, "needed_bytes": s.needed_bytes} for s in spaces]

    with gpg_home(staging.dir) as home:
        check_encryption_key(home, key)
    report["encryption"] = {"mode": key.mode.value, "key_id": key.key_id}
    log.info(
        "preflight passed: %s (PostgreSQL %s, %.0f MiB) as %s, pg_dump %s, store %s, key %s",
        database,
        server_version,
        database_size / MIB,
        role,
        pg.version,
        store.url,
        key.key_id,
    )
    return report


def check_relations_readable(cursor: Any, role: str, schemas: list[str]) -> None:
    """PreflightFailed naming the tables in scope the backup role cannot read (pg_dump would stop there)."""
    cursor.execute(sqlfiles.text("unreadable_relations"), {"schemas": schemas})
    unreadable = [f"{schema}.{name}" for schema, name, _ in cursor.fetchall()]
    if unreadable:
        raise PreflightFailed(
            f"backup role {role} cannot read {len(unreadable)} relation(s): {', '.join(unreadable[:5])}",
            hint=f"GRANT pg_read_all_data TO {role};",
        )


def check_large_objects_readable(cursor: Any) -> int:
    """How many large objects the database holds; PreflightFailed naming the ones the connected
    role cannot read (pg_dump --blobs would stop at the first) and, as its hint, the statement that
    lets it (see ``large_object_grant``)."""
    cursor.execute(sqlfiles.text("unreadable_large_objects"))
    total, unreadable, first_oids, role = cursor.fetchone()
    if unreadable:
        oids = ", ".join(str(oid) for oid in first_oids) + (", ..." if unreadable > len(first_oids) else "")
        raise PreflightFailed(
            f"backup role {role} cannot read {unreadable} of {total} large object(s) (oid {oids}): "
            "pg_read_all_data does not cover large objects",
            hint=large_object_grant(role, list(first_oids) if unreadable <= 3 else None),
        )
    return int(total)


def large_object_grant(role: str, oids: list[int] | None) -> str:
    """The statement (run as the objects' owner or a superuser) that lets ``role`` (already quoted
    as an identifier) read them: one GRANT per object named, else one for every large object."""
    if oids:
        return " ".join(f"GRANT SELECT ON LARGE OBJECT {oid} TO {role};" for oid in oids)
    in_literal = role.replace("'", "''")
    return (
        "DO $$DECLARE o oid; BEGIN FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP "
        f"EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO {in_literal}', o); END LOOP; END$$;"
    )


def free_space_of(directory: Path) -> int | None:
    """Free bytes where ``directory`` is (its nearest existing parent), without creating it; None
    when nothing of the path exists here (check-policy may run on another host than the worker)."""
    for place in (directory, *directory.parents):
        if place.exists():
            stats = os.statvfs(place)
            return stats.f_bavail * stats.f_frsize
    return None


def _free_bytes(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize
