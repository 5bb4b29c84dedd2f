"""Choosing the base backup of a point-in-time recovery, and refusing targets the store cannot
reach: decisions from plain manifest records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hms_dr.catalog import BackupSet
from hms_dr.errors import NoBackupForTarget, SetNotFound, TargetBeforeOldestBackup, WalMissing
from hms_dr.manifest import BackupKind, Payload, build_manifest, parse_manifest
from hms_dr.physical.recoveryplan import ArchivedWal, base_backup_of, plan_recovery, refuse_wal_gap
from hms_dr.physical.targets import parse_recovery_target
from hms_dr.physical.walpath import TimelineSpan, plan_wal_path
from hms_dr.wal.names import segment_file_name

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
SEG = 16 << 20


def base_set(days: int, *, stop_segno: int, tablespace: bool = False, broken: bool = False) -> BackupSet:
    """A weekly base backup taken ``days`` after T0, consistent in segment ``stop_segno``."""
    started = T0 + timedelta(days=days)
    stopped = started + timedelta(minutes=10)
    set_id = started.strftime("%Y%m%dT%H%M%SZ")
    payloads = [Payload("base.tar.zst.gpg", 10, "a" * 64, "pg_basebackup-base-tar")]
    if tablespace:
        payloads.append(Payload("16390.tar.zst.gpg", 10, "b" * 64, "pg_basebackup-tablespace-tar"))
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
    if broken:
        del body["stop_lsn"]
    document = build_manifest(
        kind=BackupKind.BASE,
        backup_set_id=set_id,
        cluster="hms-primary",
        started_at=started,
        finished_at=stopped + timedelta(minutes=1),
        payloads=payloads,
        extra={"base_backup": body},
    )
    import json

    manifest = parse_manifest(json.dumps(document).encode(), where="test")
    return BackupSet(manifest, f"hms-primary/base/{set_id}/manifest.json")


WEEK1, WEEK2, WEEK3 = base_set(0, stop_segno=0x10), base_set(7, stop_segno=0x40), base_set(14, stop_segno=0x80)
CATALOG = [WEEK1, WEEK2, WEEK3]
ARCHIVED = ArchivedWal(segment_file_name(1, 0x90), T0 + timedelta(days=15), 0x91 * SEG)


def chosen(kind: str, value: str | None = None, *, catalog: list[BackupSet] = CATALOG, **kwargs: object) -> str:
    return plan_recovery(catalog, ARCHIVED, parse_recovery_target(kind, value), **kwargs).base.backup_set_id  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("time", "2026-11-01T03:10:00Z", WEEK1),  # exactly at the first backup's stop
        ("time", "2026-11-08T03:09:59Z", WEEK1),  # the second had not finished yet
        ("time", "2026-11-08T03:10:00Z", WEEK2),
        ("time", "2026-11-16T02:00:00Z", WEEK3),
        ("lsn", f"0/{0x40 * SEG + 0x100:X}", WEEK2),  # exactly the second backup's stop
        ("lsn", f"0/{0x40 * SEG + 0xFF:X}", WEEK1),
        ("lsn", f"0/{0x90 * SEG:X}", WEEK3),
        ("latest", None, WEEK3),
        ("immediate", None, WEEK3),
        ("xid", "726", WEEK3),
        ("name", "before_migration", WEEK3),
    ],
)
def test_picks_the_newest_base_backup_whose_stop_precedes_the_target(
    kind: str, value: str | None, expected: BackupSet
) -> None:
    assert chosen(kind, value) == expected.backup_set_id


def test_a_named_base_backup_is_used_when_it_can_reach_the_target() -> None:
    assert chosen("xid", "726", backup_set_id=WEEK1.backup_set_id) == WEEK1.backup_set_id
    with pytest.raises(NoBackupForTarget, match="consistent only from 2026-11-15T03:10:00Z"):
        chosen("time", "2026-11-10T00:00:00Z", backup_set_id=WEEK3.backup_set_id)
    with pytest.raises(NoBackupForTarget, match="is not in the catalog"):
        chosen("latest", backup_set_id="20260101T000000Z")


def test_a_named_base_backup_that_is_not_there_lists_the_newest_usable_ones() -> None:
    unusable = base_set(20, stop_segno=0x88, tablespace=True)
    with pytest.raises(SetNotFound) as caught:
        chosen("latest", catalog=[*CATALOG, unusable], backup_set_id=unusable.backup_set_id)
    assert caught.value.message == (
        f"base backup set {unusable.backup_set_id} is not in the catalog (or is not usable); the newest usable base backup sets: "
        f"{WEEK3.backup_set_id}, {WEEK2.backup_set_id}, {WEEK1.backup_set_id}"
    )
    assert (caught.value.kind, caught.value.backup_set_id) == ("base", unusable.backup_set_id)


def test_a_target_before_every_base_backup_is_told_apart_from_one_after_the_archive() -> None:
    """The first is the request's to fix (the DR validation refuses it without paging); the
    second, WAL not archived up to the target, is the system's."""
    with pytest.raises(TargetBeforeOldestBackup):
        chosen("time", "2026-10-01T00:00:00Z")
    with pytest.raises(NoBackupForTarget) as after:
        chosen("time", "2026-11-16T03:00:01Z")
    assert not isinstance(after.value, TargetBeforeOldestBackup)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (
            "time",
            "2026-11-01T03:09:59Z",
            r"before base backup set 20261101T030000Z, the oldest .* only from 2026-11-01T03:10:00Z",
        ),
        ("lsn", "0/1", r"before base backup set 20261101T030000Z, the oldest .* only from LSN 0/10000100"),
        (
            "time",
            "2026-11-16T03:00:01Z",
            r"after the newest archived WAL: 000000010000000000000090 was archived at 2026-11-16T03:00:00Z",
        ),
        ("lsn", f"0/{0x91 * SEG:X}", r"after the newest archived WAL: 000000010000000000000090 ends at 0/91000000"),
    ],
)
def test_targets_outside_the_stored_range_are_refused_in_one_line(kind: str, value: str, message: str) -> None:
    with pytest.raises(NoBackupForTarget, match=message) as caught:
        chosen(kind, value)
    assert str(caught.value).count("\n") <= 1


def test_an_empty_archive_serves_latest_and_immediate_but_no_time() -> None:
    target = parse_recovery_target("time", "2026-11-16T00:00:00Z")
    with pytest.raises(NoBackupForTarget, match="the store holds none"):
        plan_recovery(CATALOG, None, target)
    assert plan_recovery(CATALOG, None, parse_recovery_target("latest")).base.backup_set_id == WEEK3.backup_set_id


def test_unusable_sets_are_skipped_with_a_reason_and_none_left_is_refused() -> None:
    plan = plan_recovery(
        [WEEK1, base_set(20, stop_segno=0x88, tablespace=True), base_set(21, stop_segno=0x89, broken=True)],
        ARCHIVED,
        parse_recovery_target("latest"),
    )
    assert plan.base.backup_set_id == WEEK1.backup_set_id
    assert len(plan.skipped) == 2 and "tablespaces" in plan.skipped[0] and "stop_lsn" in plan.skipped[1]
    with pytest.raises(NoBackupForTarget, match="no usable base backup set"):
        plan_recovery([], ARCHIVED, parse_recovery_target("latest"))


def test_a_base_backup_carries_the_wal_of_its_own_range() -> None:
    assert base_backup_of(WEEK2).carried_segments() == (segment_file_name(1, 0x3F), segment_file_name(1, 0x40))


# -- gaps in the stored WAL ----------------------------------------------------------------------

ONE_TIMELINE = (TimelineSpan(1, None, None),)
STORED = {segment_file_name(1, s) for s in range(0x3F, 0x48) if s != 0x44}  # 0x44 is lost
PATH = plan_wal_path(STORED, ONE_TIMELINE, first_segment=segment_file_name(1, 0x3F))


@pytest.mark.parametrize(
    ("kind", "value", "archived_before_gap", "refused"),
    [
        ("latest", None, None, "'latest' would stop there"),
        ("lsn", f"0/{0x44 * SEG + 5:X}", None, "must replay it"),
        ("lsn", f"0/{0x43 * SEG + 5:X}", None, None),  # before the gap
        ("time", "2026-11-08T05:00:00Z", T0 + timedelta(days=7, hours=1), "must replay it"),
        ("time", "2026-11-08T03:30:00Z", T0 + timedelta(days=7, hours=1), None),  # archived past the target already
        ("xid", "726", None, None),  # may lie before the gap: the WAL source aborts if it is asked for it
        ("name", "p1", None, None),
        ("immediate", None, None, None),
    ],
)
def test_a_gap_before_the_target_is_refused_naming_the_missing_file(
    kind: str, value: str | None, archived_before_gap: datetime | None, refused: str | None
) -> None:
    target = parse_recovery_target(kind, value)
    if refused is None:
        refuse_wal_gap(PATH, target, archived_at_before_gap=archived_before_gap)
        return
    with pytest.raises(
        WalMissing, match=f"WAL file 000000010000000000000044 is missing from the store .*{refused}"
    ) as caught:
        refuse_wal_gap(PATH, target, archived_at_before_gap=archived_before_gap)
    assert "it holds 000000010000000000000043 before it and 000000010000000000000047 after" in str(caught.value)
