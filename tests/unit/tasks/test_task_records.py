"""The records the backup, WAL, offsite, integrity, freshness and retention tasks hand on through
XCom: each survives a JSON round trip unchanged, and keeps the keys its readers (the next task,
the tests that read XCom, the Asset event extras) use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hms_dr.freshness import FreshnessReport
from hms_dr.integrity import AmcheckReady, IntegrityCheck
from hms_dr.logical.run import LogicalRun, StoredDump, StoredPayload
from hms_dr.manifest import BackupKind, Payload
from hms_dr.offsite.freshness import KindNewest, NewestOffsite, NewestPrimary
from hms_dr.offsite.sync import KindSyncReport, SyncReport
from hms_dr.publish import ReadBack
from hms_dr.records import Record
from hms_dr.retention import KindExpiry
from hms_dr.wal.rpo import ArchiverStatus, RpoReport
from hms_dr.wal.ship import ShipReport

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PAYLOAD = Payload(
    "dump.zst.gpg", 10, "ab" * 32, "pg_dump -Fc | zstd | gpg", plain_size_bytes=30, plain_sha256="cd" * 32
)

RECORDS: list[tuple[Record, set[str]]] = [
    (
        LogicalRun(
            backup_set_id="20261124T020001Z",
            cluster="hms-primary",
            database="hospital_management",
            started_at=NOW,
            finished_at=NOW + timedelta(minutes=3),
            server={"version_num": 150004},
            data_only_tables=["public.billing"],
            snapshot={"wal_lsn": "0/3000028"},
            tools={"pg_dump": "15.4"},
            compression={"method": "zstd", "level": 3},
            encryption={"mode": "public-key"},
            baselines={"tables": {}, "views": {}},
            dumps=[
                StoredDump(
                    BackupKind.LOGICAL,
                    "custom",
                    [StoredPayload("hms-primary/logical/20261124T020001Z/dump.zst.gpg", PAYLOAD)],
                    {"check": "ok"},
                    1.5,
                ),
                StoredDump(
                    BackupKind.SCHEMA,
                    None,
                    [StoredPayload("hms-primary/schema/20261124T020001Z/schema.sql.zst.gpg", PAYLOAD)],
                    {"check": "ok"},
                    0.5,
                ),
            ],
        ),
        {"backup_set_id", "cluster", "dumps", "baselines"},
    ),
    (ReadBack("hms-primary/logical/x/dump.zst.gpg", 10, "ab" * 32, 0.2), {"key", "size_bytes", "sha256", "seconds"}),
    (ReadBack("hms-primary/logical/x/dump.zst.gpg", 10), {"key", "size_bytes"}),
    (
        SyncReport(
            kinds={
                "base": KindSyncReport(
                    primary_sets=2,
                    offsite_sets=2,
                    copied_count=1,
                    copied=["b"],
                    repaired=[],
                    reverified=0,
                    reused_payloads=1,
                    too_old=0,
                    copied_bytes=2048,
                    seconds=1.0,
                    mib_per_s=None,
                    newest_offsite=NewestOffsite("b", NOW),
                    newest_primary=NewestPrimary("b", NOW),
                    failures=[],
                ),
                "wal": KindSyncReport(
                    primary_sets=0,
                    offsite_sets=0,
                    copied_count=0,
                    copied=[],
                    repaired=[],
                    reverified=0,
                    reused_payloads=0,
                    too_old=0,
                    copied_bytes=0,
                    seconds=0.1,
                    mib_per_s=None,
                    newest_offsite=NewestOffsite("w", None),
                    newest_primary=None,
                    failures=[],
                ),
            },
            copied_bytes=2048,
            seconds=1.1,
        ),
        {"kinds", "copied_bytes", "seconds"},
    ),
    (KindNewest(1, NewestPrimary("p", NOW), None), {"primary_sets", "newest_primary", "newest_offsite"}),
    (AmcheckReady("1.3", "public"), {"version", "schema"}),
    (
        IntegrityCheck({"status": "clean", "database": "db", "relations_checked": 3}, {"report.json": "k"}),
        {"report", "stored"},
    ),
    (
        KindExpiry(kept=4, expired=["a"], deleted_objects=3, locked={"b": "until 2027"}),
        {"kept", "expired", "deleted_objects", "locked"},
    ),
    (
        RpoReport(NOW, 15, 60.5, None, "000000010000000000000003", "000000010000000000000003", None),
        {
            "measured_at",
            "target_minutes",
            "store_age_s",
            "spool_age_s",
            "newest_stored_wal",
            "newest_archived_wal",
            "problem",
        },
    ),
    (
        ArchiverStatus(3, "000000010000000000000003", NOW, 0, None, None),
        {"archived_count", "last_archived_wal", "last_failed_at"},
    ),
    (ShipReport(["a"], [], ["a"], [], 16, 4, 0.3), {"shipped", "already_stored", "removed_from_spool", "plain_bytes"}),
    (FreshnessReport(NOW, ("logical: ok",), ()), {"checked_at", "lines", "problems"}),
]


@pytest.mark.parametrize(
    ("record", "keys"), RECORDS, ids=lambda value: type(value).__name__ if isinstance(value, Record) else ""
)
def test_a_task_record_survives_xcom_and_keeps_the_keys_its_readers_use(record: Record, keys: set[str]) -> None:
    stored: dict[str, Any] = json.loads(json.dumps(record.to_xcom()))
    assert keys <= set(stored)
    assert type(record).from_xcom(stored) == record


def test_the_sync_report_keeps_the_shape_the_offsite_tests_read() -> None:
    record, _ = RECORDS[3]
    stored = json.loads(json.dumps(record.to_xcom()))
    assert stored["kinds"]["base"]["copied_count"] == 1 and stored["kinds"]["base"]["reused_payloads"] == 1
    assert stored["kinds"]["base"]["newest_offsite"] == {"backup_set_id": "b", "finished_at": NOW.isoformat()}
    assert stored["kinds"]["wal"]["newest_offsite"]["finished_at"] is None  # an unreadable offsite manifest


def test_the_rpo_record_is_the_wal_asset_events_extra() -> None:
    record, _ = RECORDS[8]
    assert record.to_xcom() == {
        "measured_at": NOW.isoformat(),
        "target_minutes": 15,
        "store_age_s": 60.5,
        "spool_age_s": None,
        "newest_stored_wal": "000000010000000000000003",
        "newest_archived_wal": "000000010000000000000003",
        "problem": None,
    }
