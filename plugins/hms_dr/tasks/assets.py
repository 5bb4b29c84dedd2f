"""The assets hms-dr pipelines publish and wait on, declared once."""

from __future__ import annotations

from airflow.sdk import Asset

LOGICAL_BACKUPS = Asset(uri="hms://backups/logical", name="hms_logical_backups")
RESTORE_TESTS = Asset(uri="hms://restore-tests", name="hms_restore_tests")
BASE_BACKUPS = Asset(uri="hms://backups/base", name="hms_base_backups")
# An event per hms_wal_archive run whose RPO is within target; its extra is the RPO report.
WAL_ARCHIVE = Asset(uri="hms://backups/wal", name="hms_wal_archive")


def restore_test_schedule(cron: str, on_every_backup: bool) -> object:
    """The restore test's schedule: the policy's cron, and optionally every new daily set too."""
    if not on_every_backup:
        return cron
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=[LOGICAL_BACKUPS])


# An event per hms_offsite_sync run that copied or proved every set; its extra counts them per kind.
OFFSITE_COPIES = Asset(uri="hms://backups/offsite", name="hms_offsite_copies")
