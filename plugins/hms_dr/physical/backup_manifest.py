"""What PostgreSQL says about a base backup it produced: its ``backup_manifest`` and ``backup_label``.

``backup_manifest`` (JSON, written by the server, a separate file in pg_basebackup's tar output)
lists every file with its checksum and the WAL range the backup needs: ``WAL-Ranges`` of
timeline, Start-LSN and End-LSN. ``backup_label`` (text, inside base.tar) repeats the start
position and adds the checkpoint and label. Not to be confused with hms-dr's own manifest.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hms_dr.errors import BackupVerificationFailed
from hms_dr.wal.names import format_lsn, parse_lsn

# Version 2 (PostgreSQL 17 and later) adds the cluster's System-Identifier; the fields hms-dr reads
# (Files, WAL-Ranges) are the same in both.
SUPPORTED_VERSIONS = (1, 2)


@dataclass(frozen=True)
class WalRange:
    """WAL of one timeline that a backup needs, from ``start_lsn`` up to (not including) ``end_lsn``."""

    timeline: int
    start_lsn: int
    end_lsn: int


@dataclass(frozen=True)
class PgBackupManifest:
    """The parts of PostgreSQL's backup_manifest that hms-dr records."""

    version: int
    file_count: int
    total_size_bytes: int
    wal_ranges: tuple[WalRange, ...]  # in WAL order: the start timeline first

    @property
    def start_lsn(self) -> int:
        return self.wal_ranges[0].start_lsn

    @property
    def stop_lsn(self) -> int:
        return self.wal_ranges[-1].end_lsn

    @property
    def start_timeline(self) -> int:
        return self.wal_ranges[0].timeline

    @property
    def stop_timeline(self) -> int:
        return self.wal_ranges[-1].timeline


@dataclass(frozen=True)
class BackupLabel:
    """backup_label: where the backup starts in WAL, and what it was called."""

    start_lsn: int
    start_timeline: int
    checkpoint_lsn: int
    label: str
    start_time_text: str  # the server's wall clock in its log_timezone, kept as written
    backup_from: str  # "primary" | "standby"


def parse_backup_manifest(raw: bytes, *, where: str) -> PgBackupManifest:
    """Parse a backup_manifest; BackupVerificationFailed names ``where`` when it is malformed."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupVerificationFailed(f"backup manifest {where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BackupVerificationFailed(f"backup manifest {where} is not a JSON object")
    version = data.get("PostgreSQL-Backup-Manifest-Version")
    if version not in SUPPORTED_VERSIONS:
        raise BackupVerificationFailed(
            f"backup manifest {where} has version {version!r}; hms-dr reads {SUPPORTED_VERSIONS}"
        )
    try:
        files: list[Any] = data["Files"]
        ranges = tuple(
            WalRange(int(r["Timeline"]), parse_lsn(r["Start-LSN"]), parse_lsn(r["End-LSN"])) for r in data["WAL-Ranges"]
        )
        total = sum(int(f["Size"]) for f in files)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupVerificationFailed(f"backup manifest {where} is missing or has a malformed field: {exc}") from None
    if not ranges:
        raise BackupVerificationFailed(
            f"backup manifest {where} names no WAL range: the backup would not be restorable"
        )
    for r in ranges:
        if r.timeline < 1 or r.end_lsn < r.start_lsn:
            raise BackupVerificationFailed(
                f"backup manifest {where} has an impossible WAL range: timeline {r.timeline} from "
                f"{format_lsn(r.start_lsn)} to {format_lsn(r.end_lsn)}"
            )
    # The server lists the ranges newest timeline first (it walks the timeline history back from
    # the end); hms-dr keeps them in WAL order.
    ordered = tuple(sorted(ranges, key=lambda r: (r.start_lsn, r.end_lsn)))
    return PgBackupManifest(version=int(version), file_count=len(files), total_size_bytes=total, wal_ranges=ordered)


def parse_backup_label(text: str, *, where: str) -> BackupLabel:
    """Parse backup_label ("START WAL LOCATION: 0/2000028 (file ...)" and so on)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, separator, value = line.partition(": ")
        if separator:
            fields[name.strip()] = value.strip()
    try:
        return BackupLabel(
            start_lsn=parse_lsn(fields["START WAL LOCATION"].split()[0]),
            start_timeline=int(fields["START TIMELINE"]),
            checkpoint_lsn=parse_lsn(fields["CHECKPOINT LOCATION"]),
            label=fields.get("LABEL", ""),
            start_time_text=fields.get("START TIME", ""),
            backup_from=fields.get("BACKUP FROM", "primary"),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise BackupVerificationFailed(f"backup_label {where} is missing or has a malformed field: {exc}") from None


def check_label_matches_manifest(label: BackupLabel, manifest: PgBackupManifest, *, where: str) -> None:
    """The label inside base.tar and the manifest beside it must describe the same backup."""
    if (label.start_lsn, label.start_timeline) != (manifest.start_lsn, manifest.start_timeline):
        raise BackupVerificationFailed(
            f"backup {where}: backup_label starts at {format_lsn(label.start_lsn)} on timeline {label.start_timeline}, "
            f"backup_manifest at {format_lsn(manifest.start_lsn)} on timeline {manifest.start_timeline}"
        )
