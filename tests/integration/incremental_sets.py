"""Incremental base backup sets made for the tests of restoring chains, until the engine takes
them itself (branch incr-backup): a real ``pg_basebackup --incremental`` of a PostgreSQL 17+
cluster, proven, stored and published with the engine's own steps (pg_verifybackup, the manifest
fields of ``describe_backup``, ``store_staged_file``, ``publish_set``), plus the chain fields of
``physical.chain``. Only the choice of the parent's backup_manifest is the test's: it keeps the
plain copy of each set's backup_manifest it took.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import BackupSet, find_set, key_for
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home
from hms_dr.manifest import BackupKind, new_backup_set_id
from hms_dr.pgtools import ConnectionInfo, tool_env
from hms_dr.physical.basebackup import describe_backup, label_for, manifest_extra
from hms_dr.physical.chain import chain_fields_for_child, full_backup_fields
from hms_dr.physical.pgbasebackup import pg_basebackup_argv
from hms_dr.physical.preflight import check_source_and_staging
from hms_dr.physical.staging import staged_files, store_staged_file, zstd_stage
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, verify_tar_backup
from hms_dr.publish import publish_set

if TYPE_CHECKING:
    from hms_dr.store import Store


@dataclass(frozen=True)
class TakenSet:
    """A published base set and the plain backup_manifest the next incremental is taken against."""

    backup_set: BackupSet
    pg_manifest: Path

    @property
    def backup_set_id(self) -> str:
        return self.backup_set.backup_set_id


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def take_base_set(
    conn: ConnectionInfo,
    store: Store,
    cluster: str,
    *,
    encryption_key: EncryptionKey,
    staging_dir: Path,
    keep_dir: Path,
    parent: TakenSet | None = None,
) -> TakenSet:
    """A full base set (``parent`` None) or an incremental of ``parent``, published under ``cluster``."""
    started_at = datetime.now(UTC)
    backup_set_id = new_backup_set_id(started_at)
    if parent is not None and backup_set_id <= parent.backup_set_id:  # ids have one-second steps
        time.sleep(1.05)
        started_at = datetime.now(UTC)
        backup_set_id = new_backup_set_id(started_at)
    source, pg = check_source_and_staging(conn, staging_dir, space_ratio=1.0)
    workdir = Path(tempfile.mkdtemp(prefix=f"base-{backup_set_id}-", dir=staging_dir))
    try:
        tar_dir = workdir / "tars"
        label = label_for(backup_set_id)
        argv = pg_basebackup_argv(pg, tar_dir, label=label)
        if parent is not None:
            argv.append(f"--incremental={parent.pg_manifest}")
        backup_started_at = datetime.now(UTC)
        subprocess.run(argv, env=tool_env(conn), check=True, capture_output=True)
        backup_stopped_at = datetime.now(UTC)
        verification = verify_tar_backup(pg, tar_dir, workdir)
        base_backup: dict[str, Any] = describe_backup(tar_dir, source, verification, label=label)
        base_backup.update(start_time=_iso(backup_started_at), stop_time=_iso(backup_stopped_at))
        base_backup.update(full_backup_fields() if parent is None else chain_fields_for_child(parent.backup_set))
        kept = keep_dir / f"{backup_set_id}.backup_manifest"
        shutil.copyfile(tar_dir / BACKUP_MANIFEST, kept)
        with gpg_home(staging_dir) as home:
            check_encryption_key(home, encryption_key)  # imports the public key
            compressor, encryption = zstd_stage(3, 0), encrypt_stage(home, encryption_key)
            payloads = [
                store_staged_file(
                    store,
                    key_for(cluster, BackupKind.BASE, backup_set_id, staged.payload_name),
                    staged,
                    compressor=compressor,
                    encryption=encryption,
                )
                for staged in staged_files(tar_dir)
            ]
        extra = manifest_extra(
            base_backup,
            pg,
            zstd_level=3,
            encryption_key=encryption_key,
            verification=verification,
            verify_readback=False,
            producer=None,
        )
        publish_set(
            store,
            kind=BackupKind.BASE,
            cluster=cluster,
            backup_set_id=backup_set_id,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            payloads=payloads,
            extra=extra,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return TakenSet(find_set(store, cluster, BackupKind.BASE, backup_set_id), kept)
