"""The policy's ``schedules:`` section: one 5-field cron expression per scheduled DAG."""

from __future__ import annotations

from collections.abc import Mapping

from hms_dr.policy.reader import PolicyReader

SCHEDULE_NAMES = (
    "daily_logical_backup",
    "wal_archive",
    "weekly_base_backup",
    "offsite_sync",
    "restore_test",
    "integrity_check",
)


def parse_schedules(reader: PolicyReader) -> Mapping[str, str]:
    """Every name in SCHEDULE_NAMES -> its cron expression; each is required."""
    return {name: reader.cron(f"schedules.{name}") for name in SCHEDULE_NAMES}
