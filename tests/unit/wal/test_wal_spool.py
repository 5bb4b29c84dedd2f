"""Which spool files a run ships: every finished WAL file not yet stored, oldest first."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hms_dr.errors import PreflightFailed
from hms_dr.wal.names import parse_wal_name
from hms_dr.wal.spool import SpoolFile, newest_spool_file, plan_shipping, read_spool

NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)


def spool_file(name: str, age_s: int) -> SpoolFile:
    wal = parse_wal_name(name)
    assert wal is not None
    return SpoolFile(
        wal=wal, path=Path("/spool") / name, size_bytes=16 << 20, modified_at=NOW - timedelta(seconds=age_s)
    )


SEG1 = spool_file("000000010000000000000001", 300)
SEG2 = spool_file("000000010000000000000002", 200)
HIST = spool_file("00000002.history", 100)
SEG3 = spool_file("000000020000000000000003", 50)


@pytest.mark.parametrize(
    ("files", "stored", "to_ship", "already"),
    [
        ([SEG3, SEG1, HIST, SEG2], set(), [SEG1, SEG2, HIST, SEG3], []),
        ([SEG3, SEG1, HIST, SEG2], {SEG1.name, HIST.name}, [SEG2, SEG3], [SEG1, HIST]),
        ([SEG1, SEG2], {SEG1.name, SEG2.name, "000000010000000000000000"}, [], [SEG1, SEG2]),
        ([], {SEG1.name}, [], []),
    ],
)
def test_ships_every_file_not_yet_stored_oldest_first(files, stored, to_ship, already) -> None:  # type: ignore[no-untyped-def]
    plan = plan_shipping(files, stored)
    assert list(plan.to_ship) == to_ship
    assert list(plan.already_stored) == already


def test_files_archived_in_the_same_second_ship_in_wal_order() -> None:
    a = spool_file("000000010000000000000005", 10)
    b = spool_file("000000010000000000000006", 10)
    assert list(plan_shipping([b, a], set()).to_ship) == [a, b]


def test_newest_spool_file_is_the_last_archived() -> None:
    assert newest_spool_file([SEG1, SEG3, SEG2]) == SEG3
    assert newest_spool_file([]) is None


def test_reading_the_spool_skips_in_flight_copies_and_reports_strangers(tmp_path: Path) -> None:
    (tmp_path / "000000010000000000000002").write_bytes(b"b")
    (tmp_path / "000000010000000000000001").write_bytes(b"a")
    (tmp_path / ".000000010000000000000003.tmp.4242").write_bytes(b"partial copy")
    (tmp_path / "notes.txt").write_text("?")
    (tmp_path / "archive_status").mkdir()
    old = (NOW - timedelta(hours=1)).timestamp()
    os.utime(tmp_path / "000000010000000000000002", (old, old))
    listing = read_spool(tmp_path)
    assert [f.name for f in listing.files] == ["000000010000000000000002", "000000010000000000000001"]
    assert listing.files[0].modified_at == datetime.fromtimestamp(old, tz=UTC)
    assert listing.ignored == ("notes.txt",)


def test_a_missing_spool_directory_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(PreflightFailed, match=r"WAL spool directory .*/nope does not exist"):
        read_spool(tmp_path / "nope")
