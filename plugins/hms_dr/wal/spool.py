"""The spool: the local directory archive_command copies finished WAL files into.

``read_spool`` lists it (I/O); ``plan_shipping`` decides, from the listing and the names already
in the store, which files to ship (oldest first) and which are already stored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hms_dr.errors import PreflightFailed
from hms_dr.wal.names import WalFileName, parse_wal_name


@dataclass(frozen=True)
class SpoolFile:
    """One finished file in the spool; ``modified_at`` is when archive_command completed it."""

    wal: WalFileName
    path: Path
    size_bytes: int
    modified_at: datetime

    @property
    def name(self) -> str:
        return self.wal.name


@dataclass(frozen=True)
class SpoolListing:
    files: tuple[SpoolFile, ...]
    ignored: tuple[str, ...]  # names that are not WAL files (in-flight temp files are not listed at all)


@dataclass(frozen=True)
class ShippingPlan:
    """What one run does: ship the new files (oldest first), re-check those already stored."""

    to_ship: tuple[SpoolFile, ...]
    already_stored: tuple[SpoolFile, ...]


def read_spool(spool_dir: Path) -> SpoolListing:
    """Every finished WAL file in ``spool_dir``; archive_command's temp files (``.name.tmp.pid``) are skipped."""
    if not spool_dir.is_dir():
        raise PreflightFailed(f"WAL spool directory {spool_dir} does not exist or is not a directory")
    files: list[SpoolFile] = []
    ignored: list[str] = []
    with os.scandir(spool_dir) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            wal = parse_wal_name(entry.name)
            if wal is None:
                ignored.append(entry.name)
                continue
            stat = entry.stat(follow_symlinks=False)
            files.append(
                SpoolFile(
                    wal=wal,
                    path=Path(entry.path),
                    size_bytes=stat.st_size,
                    modified_at=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
                )
            )
    return SpoolListing(files=tuple(sorted(files, key=_oldest_first)), ignored=tuple(sorted(ignored)))


def plan_shipping(files: Sequence[SpoolFile], stored_names: Set[str]) -> ShippingPlan:
    """Split the spool into files to ship (oldest first) and files whose set already exists."""
    ordered = sorted(files, key=_oldest_first)
    return ShippingPlan(
        to_ship=tuple(f for f in ordered if f.name not in stored_names),
        already_stored=tuple(f for f in ordered if f.name in stored_names),
    )


def newest_spool_file(files: Sequence[SpoolFile]) -> SpoolFile | None:
    return max(files, key=_oldest_first) if files else None


def _oldest_first(spool_file: SpoolFile) -> tuple[datetime, str]:
    # mtime first (archive order); the name breaks ties, and WAL names sort in WAL order per timeline.
    return (spool_file.modified_at, spool_file.name)
