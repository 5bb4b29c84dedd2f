"""The policy's ``retention:`` section: how long each kind of backup set, the WAL and the restore
reports are kept, and the optional grandfather-father-son keeps of the daily sets."""

from __future__ import annotations

from dataclasses import dataclass

from hms_dr.policy.reader import PolicyReader


@dataclass(frozen=True)
class RetentionPolicy:
    logical_days: int
    orphan_payload_hours: int
    wal_days: int
    base_backups_keep: int
    offsite_days: int
    restore_reports_days: int
    # Optional grandfather-father-son keeps of the daily sets (0: off): the newest set of each of
    # the newest N ISO weeks / calendar months stays whatever its age (hms_dr.retention).
    gfs_weekly_keep: int = 0
    gfs_monthly_keep: int = 0


def parse_retention(reader: PolicyReader) -> RetentionPolicy:
    return RetentionPolicy(
        logical_days=reader.integer("retention.logical_days", minimum=1),
        orphan_payload_hours=reader.integer("retention.orphan_payload_hours", minimum=1),
        wal_days=reader.integer("retention.wal_days", minimum=1),
        base_backups_keep=reader.integer("retention.base_backups_keep", minimum=1),
        offsite_days=reader.integer("retention.offsite_days", minimum=1),
        restore_reports_days=reader.integer("retention.restore_reports_days", minimum=1),
        gfs_weekly_keep=_optional_keep(reader, "gfs_weekly_keep"),
        gfs_monthly_keep=_optional_keep(reader, "gfs_monthly_keep"),
    )


def _optional_keep(reader: PolicyReader, name: str) -> int:
    """retention.gfs_weekly_keep / gfs_monthly_keep: absent or null means 0 (off)."""
    if reader.data["retention"].get(name) is None:
        return 0
    return reader.integer(f"retention.{name}", minimum=0, maximum=520)
