"""The policy's ``schedules:`` section: one 5-field cron expression per scheduled DAG.

``incremental_base_backup`` is the one optional key (default daily at 03:00): it replaces
``weekly_base_backup`` as hms_weekly_base_backup's schedule only when base_backup.incremental is
on, so a policy written before incrementals existed must not be refused for lacking it."""

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
    "incremental_base_backup",
)
# Schedules a policy may leave out, with their default.
OPTIONAL_SCHEDULES = {"incremental_base_backup": "0 3 * * *"}


def parse_schedules(reader: PolicyReader) -> Mapping[str, str]:
    """Every name in SCHEDULE_NAMES -> its cron expression; each is required."""
    given = reader.value("schedules")
    return {
        name: reader.cron(f"schedules.{name}")
        if name not in OPTIONAL_SCHEDULES or (isinstance(given, dict) and given.get(name) is not None)
        else OPTIONAL_SCHEDULES[name]
        for name in SCHEDULE_NAMES
    }
