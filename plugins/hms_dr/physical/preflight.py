"""Preflight of a base backup: the source cluster, the replication role, the tools and the staging space.

Everything is checked before pg_basebackup starts, each failure as one line naming the role, the
setting or the directory. The decisions (``judge_source``, ``check_staging_space``) are pure
functions of what was measured, so their rules are tested without a server.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hms_dr import sqlfiles
from hms_dr.database import connect
from hms_dr.errors import PreflightFailed, ReplicationNotPermitted, StagingSpaceShort
from hms_dr.pginstalls import PgInstall, data_install
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy.base_backup import BaseBackupMethod
from hms_dr.units import human_bytes

log = logging.getLogger(__name__)

# pg_basebackup -X stream holds two WAL senders: one sends the files, one streams the WAL; the
# streamed method's -X fetch holds one, and its temporary slot (physical.walhold) the other.
WAL_SENDERS_NEEDED = 2
# WAL written while the copy runs lands in pg_wal.tar and again in the extracted copy: at least
# one segment each, whatever the cluster's size (it dominates for a small cluster).
WAL_SEGMENTS_STAGED = 4
REQUIRED_PROGRAMS = ("zstd", "gpg", "gpgconf", "gpg-agent", "gpg-connect-agent")


@dataclass(frozen=True)
class SourceCluster:
    """The cluster a base backup copies, as the replication role sees it."""

    server_version_num: int
    server_version: str
    in_recovery: bool
    system_identifier: str
    data_checksums: bool
    wal_segment_size_bytes: int
    wal_level: str
    max_wal_senders: int
    role_name: str
    can_replicate: bool
    is_superuser: bool
    cluster_size_bytes: int
    databases_not_measured: int
    summarize_wal: str | None = None  # "on"/"off" from 17 on; None before (no incremental backups)
    timeline: int | None = None  # the timeline the server writes now
    max_wal_size_bytes: int = 1 << 30
    extra_tablespaces: int = 0  # besides pg_default and pg_global

    @property
    def server_major(self) -> int:
        return self.server_version_num // 10000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_source_cluster(conn: ConnectionInfo) -> SourceCluster:
    """Connect as the backup's role and read include/sql/physical/base_backup_source.sql."""
    with connect(conn) as connection:
        cursor = connection.execute(sqlfiles.text("physical/base_backup_source"))
        row = cursor.fetchone()
        names = [column.name for column in cursor.description]
    return SourceCluster(**dict(zip(names, row, strict=False)))


def judge_source(source: SourceCluster, *, where: str) -> None:
    """Raise for the first reason pg_basebackup would fail against ``source`` (a pure decision)."""
    if not (source.can_replicate or source.is_superuser):
        raise ReplicationNotPermitted(
            f"role {source.role_name} on {where} lacks the REPLICATION attribute: pg_basebackup cannot stream a base backup",
            hint=f"ALTER ROLE {source.role_name} REPLICATION, or give the base backup the replication role (hms_replica)",
        )
    if source.wal_level == "minimal" or source.max_wal_senders < WAL_SENDERS_NEEDED:
        raise ReplicationNotPermitted(
            f"{where} has wal_level={source.wal_level}, max_wal_senders={source.max_wal_senders}: "
            f"a base backup with streamed WAL needs wal_level replica and {WAL_SENDERS_NEEDED} free WAL senders",
            hint="include include/postgres/postgresql.hms.conf in postgresql.conf and restart the server",
        )


def staging_space_needed(cluster_size_bytes: int, space_ratio: float, wal_segment_size_bytes: int) -> int:
    """Free bytes a base backup needs in staging: the tars and the extracted copy (``space_ratio``
    times the cluster) plus the WAL of the run, staged twice."""
    return int(cluster_size_bytes * space_ratio) + WAL_SEGMENTS_STAGED * wal_segment_size_bytes


def streamed_space_needed(staging_limit_bytes: int, source: SourceCluster) -> int:
    """Free bytes a streamed base backup needs in staging: its bound (the manifest) plus the WAL
    written while the copy runs, estimated by the server's max_wal_size (what it writes between
    checkpoints; a copy that outlasts several checkpoints on a busy primary may need more)."""
    return staging_limit_bytes + max(source.max_wal_size_bytes, WAL_SEGMENTS_STAGED * source.wal_segment_size_bytes)


def copy_method_for(method: BaseBackupMethod, source: SourceCluster) -> BaseBackupMethod:
    """The policy's method, unless the cluster has tablespaces of its own: pg_basebackup writes
    one tablespace to stdout, so such a cluster is copied the staged way."""
    if method is BaseBackupMethod.STREAMED and source.extra_tablespaces:
        return BaseBackupMethod.STAGED
    return method


def check_staging_space(staging_dir: Path, *, free_bytes: int, needed_bytes: int, cluster_size_bytes: int) -> None:
    """StagingSpaceShort when ``free_bytes`` is below ``needed_bytes`` (a pure decision)."""
    if free_bytes < needed_bytes:
        raise StagingSpaceShort(
            f"not enough free space in base backup staging {staging_dir}: {human_bytes(free_bytes)} free, "
            f"{human_bytes(needed_bytes)} needed for a cluster of {human_bytes(cluster_size_bytes)}",
            hint="free space there or point base_backup.staging_dir in the policy at a larger disk",
        )


def free_bytes(directory: Path) -> int:
    """Free space for an unprivileged writer in ``directory`` (created 0700 if missing)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def check_programs() -> None:
    """zstd and gpg are installed (the PostgreSQL programs are chosen per source: ``source_tools``)."""
    for program in REQUIRED_PROGRAMS:
        if shutil.which(program) is None:
            raise PreflightFailed(f"{program} is not installed on this worker", hint="apt-get install zstd gnupg")


def source_tools(source: SourceCluster, *, where: str) -> PgInstall:
    """The PostgreSQL programs of the source's own major: its base backup is verified, and later
    recovered, by that major's programs alone (pg_verifybackup parses its WAL with pg_waldump,
    which reads one major's WAL format)."""
    pg = data_install(source.server_major, data=f"the cluster at {where} ({source.server_version})")
    for program in ("pg_basebackup", "pg_verifybackup", "pg_waldump"):
        pg.program(program)  # PreflightFailed naming the program when that install lacks it
    return pg


def check_source_and_staging(
    conn: ConnectionInfo, staging_dir: Path, *, space_needed: Callable[[SourceCluster], int]
) -> tuple[SourceCluster, PgInstall]:
    """Tools, source cluster, role and staging space; the source and the PostgreSQL programs chosen for it."""
    check_programs()
    source = read_source_cluster(conn)
    where = f"{conn.host}:{conn.port}"
    judge_source(source, where=where)
    pg = source_tools(source, where=where)
    if source.databases_not_measured:
        log.warning(
            "role %s may not connect to %d database(s): their size is not in the staging estimate",
            source.role_name,
            source.databases_not_measured,
        )
    needed = space_needed(source)
    check_staging_space(
        staging_dir,
        free_bytes=free_bytes(staging_dir),
        needed_bytes=needed,
        cluster_size_bytes=source.cluster_size_bytes,
    )
    log.info(
        "base backup preflight passed: %s (PostgreSQL %s, system %s, %s) as %s, pg_basebackup %s, staging %s",
        where,
        source.server_version,
        source.system_identifier,
        human_bytes(source.cluster_size_bytes),
        source.role_name,
        pg.version,
        staging_dir,
    )
    return source, pg
