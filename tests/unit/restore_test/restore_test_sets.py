"""Backup sets for the restore test's unit tests: a daily logical set with (or without) a snapshot
LSN, and weekly base backups consistent in a given WAL segment, as real parsed manifests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hms_dr.catalog import BackupSet
from hms_dr.manifest import BackupKind, Payload, build_manifest, parse_manifest

CLUSTER = "hms-primary"
T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
SEG = 16 << 20
DAILY_ID = "20261111T020000Z"


def _parsed(document: dict[str, object], key: str) -> BackupSet:
    return BackupSet(parse_manifest(json.dumps(document).encode(), where="test"), key)


def daily_set(snapshot_segno: int | None = 0x40) -> BackupSet:
    """The daily set of 2026-11-11, its snapshot in WAL segment ``snapshot_segno`` (None: no snapshot)."""
    started = T0 + timedelta(days=10)
    extra = {"snapshot": {"wal_lsn": f"0/{snapshot_segno * SEG + 0x500:X}"}} if snapshot_segno is not None else {}
    document = build_manifest(
        kind=BackupKind.LOGICAL,
        backup_set_id=DAILY_ID,
        cluster=CLUSTER,
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        payloads=[Payload("dump.gpg", 10, "c" * 64, "pg_dump-custom")],
        extra=extra,
    )
    return _parsed(document, f"{CLUSTER}/logical/{DAILY_ID}/manifest.json")


def base_set(days: int, *, stop_segno: int) -> BackupSet:
    """A weekly base backup taken ``days`` after T0, consistent in WAL segment ``stop_segno``."""
    from hms_dr.wal.names import segment_file_name

    started = T0 + timedelta(days=days)
    stopped = started + timedelta(minutes=10)
    set_id = started.strftime("%Y%m%dT%H%M%SZ")
    body = {
        "start_lsn": f"0/{(stop_segno - 1) * SEG + 0x28:X}",
        "stop_lsn": f"0/{stop_segno * SEG + 0x100:X}",
        "timeline": 1,
        "start_wal_file": segment_file_name(1, stop_segno - 1),
        "stop_wal_file": segment_file_name(1, stop_segno),
        "start_time": started.isoformat(),
        "stop_time": stopped.isoformat(),
        "wal_segment_size": SEG,
        "system_identifier": "7312",
    }
    document = build_manifest(
        kind=BackupKind.BASE,
        backup_set_id=set_id,
        cluster=CLUSTER,
        started_at=started,
        finished_at=stopped + timedelta(minutes=1),
        payloads=[Payload("base.tar.zst.gpg", 10, "a" * 64, "pg_basebackup-base-tar")],
        extra={"base_backup": body},
    )
    return _parsed(document, f"{CLUSTER}/base/{set_id}/manifest.json")


BEFORE = base_set(0, stop_segno=0x10)  # consistent before the daily set's snapshot (segment 0x40)
AFTER = base_set(14, stop_segno=0x80)  # consistent only after it
