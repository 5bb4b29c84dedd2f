"""Incremental base backup sets for the tests of restoring chains, taken by the engine itself:
``take_base_backup`` with ``backup_type`` forced (full, or incremental against the newest set,
which must be the ``parent`` the test names), on a PostgreSQL 17+ cluster. The plain
backup_manifest of each set is the engine's own kept copy (``physical.parentmanifest``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hms_dr.catalog import BackupSet, find_set
from hms_dr.crypto import EncryptionKey
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.physical.incremental import BackupTypeRequest
from hms_dr.physical.parentmanifest import kept_manifest_path

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


def take_base_set(
    conn: ConnectionInfo,
    store: Store,
    cluster: str,
    *,
    encryption_key: EncryptionKey,
    staging_dir: Path,
    parent: TakenSet | None = None,
) -> TakenSet:
    """A full base set (``parent`` None) or an incremental of ``parent``, published under ``cluster``."""
    time.sleep(1.05)  # set ids are UTC seconds: a parent taken within the same second would share its id
    result = take_base_backup(
        conn,
        store,
        cluster,
        encryption_key=encryption_key,
        staging_dir=staging_dir,
        zstd_level=3,
        staging_space_ratio=2.0,
        backup_type=BackupTypeRequest.FULL if parent is None else BackupTypeRequest.INCREMENTAL,
    )
    assert result["parent_backup_set_id"] == (parent.backup_set_id if parent else None), result["plan_reasons"]
    backup_set_id = result["backup_set_id"]
    return TakenSet(
        find_set(store, cluster, BackupKind.BASE, backup_set_id), kept_manifest_path(staging_dir, backup_set_id)
    )
