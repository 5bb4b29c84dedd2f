"""The assets hms-dr pipelines publish and wait on, declared once."""

from __future__ import annotations

from airflow.sdk import Asset

LOGICAL_BACKUPS = Asset(uri="hms://backups/logical", name="hms_logical_backups")
RESTORE_TESTS = Asset(uri="hms://restore-tests", name="hms_restore_tests")
