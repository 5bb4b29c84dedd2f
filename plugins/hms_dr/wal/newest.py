"""The newest WAL set in a store and when it was archived: the one answer the WAL DAG's RPO, the
status page and the freshness check share.

Its age is the manifest's ``archived_at`` (when PostgreSQL handed the segment to the archiver),
never the listing's mtime: a set copied or restored into the store later has a new mtime but
protects nothing newer. Cost: one listing (or the caller's) and the manifests of the newest
``NEWEST_SETS_READ`` complete sets by name, never every WAL manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hms_dr.catalog import find_set
from hms_dr.errors import ManifestInvalid
from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.wal.listing import StoredWalSet, read_wal_sets

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

# WAL names sort in WAL order within a timeline; a handful covers a .history/.backup file sorting
# after the newest segment.
NEWEST_SETS_READ = 8


@dataclass(frozen=True)
class StoredWal:
    """A complete WAL set and when its WAL was archived (its manifest's ``archived_at``)."""

    name: str
    archived_at: datetime


def newest_stored_wal(store: Store, cluster: str, wal_sets: Sequence[StoredWalSet] | None = None) -> StoredWal | None:
    """The complete WAL set with the newest ``archived_at`` among the newest few by name; None if
    there is none. ``wal_sets`` is the caller's listing (``read_wal_sets``), read here when omitted."""
    if wal_sets is None:
        wal_sets = read_wal_sets(store, cluster)
    names = sorted(wal_set.name for wal_set in wal_sets if wal_set.complete)[-NEWEST_SETS_READ:]
    newest: StoredWal | None = None
    for name in names:
        try:
            manifest = find_set(store, cluster, BackupKind.WAL, name).manifest
        except ManifestInvalid as exc:
            log.warning("WAL set %s skipped for the newest archived WAL: %s", name, exc.message)
            continue
        archived_at = parse_utc(manifest.body.get("archived_at") or manifest.body["finished_at"])
        if newest is None or archived_at > newest.archived_at:
            newest = StoredWal(name, archived_at)
    return newest
