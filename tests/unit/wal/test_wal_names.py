"""WAL file names are recognised by kind, and the timeline is read from the name."""

from __future__ import annotations

import pytest

from hms_dr.wal.names import WalFileKind, parse_wal_name


@pytest.mark.parametrize(
    ("name", "kind", "timeline"),
    [
        ("000000010000000000000003", WalFileKind.SEGMENT, 1),
        ("0000000A000000FF000000FE", WalFileKind.SEGMENT, 10),
        ("00000002.history", WalFileKind.HISTORY, 2),
        ("000000010000000000000002.00000028.backup", WalFileKind.BACKUP, 1),
        ("000000030000000000000007.partial", WalFileKind.PARTIAL, 3),
    ],
)
def test_timeline_and_kind_come_from_the_file_name(name: str, kind: WalFileKind, timeline: int) -> None:
    parsed = parse_wal_name(name)
    assert parsed is not None
    assert (parsed.name, parsed.kind, parsed.timeline) == (name, kind, timeline)


@pytest.mark.parametrize(
    "name",
    [
        "00000001000000000000003",  # 23 hex digits
        "000000010000000000000003.tmp",
        ".000000010000000000000003.tmp.123",  # archive_wal.sh's in-flight copy
        "0000000100000000000000AB".lower(),
        "000000000000000000000003",  # timeline 0 does not exist
        "archive_status",
        "00000002.history.bak",
    ],
)
def test_names_that_are_not_archived_wal_files_are_refused(name: str) -> None:
    assert parse_wal_name(name) is None
