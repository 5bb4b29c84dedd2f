"""The WAL sets of a store, from one listing: which names are complete sets and how old each is.

A store holds one set per WAL file, so a busy cluster has thousands of them; shipping and expiry
decide from a single listing instead of reading every manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hms_dr.catalog import read_set_folders
from hms_dr.manifest import BackupKind

if TYPE_CHECKING:
    from hms_dr.store import Store


@dataclass(frozen=True)
class StoredWalSet:
    """One WAL set folder: its name, whether its manifest exists, and its newest object's mtime."""

    name: str
    complete: bool
    modified_at: datetime


def read_wal_sets(store: Store, cluster: str) -> list[StoredWalSet]:
    """Every WAL set folder of ``cluster`` in ``store``, by name order."""
    folders = read_set_folders(store, cluster, BackupKind.WAL)
    return [StoredWalSet(name, folder.complete, folder.newest_at) for name, folder in folders.items()]


def stored_wal_names(store: Store, cluster: str) -> set[str]:
    """Names of the WAL files whose set is complete (has a manifest)."""
    return {wal_set.name for wal_set in read_wal_sets(store, cluster) if wal_set.complete}
