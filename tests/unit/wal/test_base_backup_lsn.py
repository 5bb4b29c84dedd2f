"""WAL positions and segment names: the arithmetic the base backup and PITR share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hms_dr.wal.names import (
    check_segment_size,
    format_lsn,
    last_wal_segment_name,
    parse_lsn,
    parse_segment_name,
    segment_start_lsn,
    wal_segment_name,
)

MIB = 1 << 20


@pytest.mark.parametrize(
    ("text", "position"),
    [("0/2000028", 0x2000028), ("16/B374D848", 0x16B374D848), ("0/0", 0), ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1)],
)
def test_an_lsn_reads_and_writes_as_postgresql_prints_it(text: str, position: int) -> None:
    assert parse_lsn(text) == position
    assert format_lsn(position) == text


def test_lower_case_and_surrounding_blanks_are_read() -> None:
    assert parse_lsn(" 16/b374d848\n") == 0x16B374D848


@pytest.mark.parametrize("text", ["", "0/", "/1", "G/1", "1/2/3", "123456789/0", "0x16/1", "16-B374D848"])
def test_anything_else_is_not_an_lsn(text: str) -> None:
    with pytest.raises(ValueError, match="not a WAL position"):
        parse_lsn(text)


@pytest.mark.parametrize(
    ("timeline", "lsn", "segment_size", "name"),
    [
        (1, "0/2000028", 16 * MIB, "000000010000000000000002"),  # a fresh cluster's first backup
        (1, "1/A0000000", 16 * MIB, "0000000100000001000000A0"),
        (2, "0/FFFFFFF", 16 * MIB, "00000002000000000000000F"),
        (1, "0/FFFFFFFF", 16 * MIB, "0000000100000000000000FF"),  # the last segment of a log id
        (1, "1/0", 16 * MIB, "000000010000000100000000"),
        (0x1F, "2A/3", 16 * MIB, "0000001F0000002A00000000"),
        (1, "1/4000000", 64 * MIB, "000000010000000100000001"),  # initdb --wal-segsize=64
        (1, "2/40000000", 1024 * MIB, "000000010000000200000001"),
        (1, "0/300000", 1 * MIB, "000000010000000000000003"),
    ],
)
def test_the_segment_holding_a_position(timeline: int, lsn: str, segment_size: int, name: str) -> None:
    assert wal_segment_name(timeline, lsn, segment_size) == name
    assert wal_segment_name(timeline, parse_lsn(lsn), segment_size) == name


@pytest.mark.parametrize(
    ("end_lsn", "name"),
    [
        ("0/3000000", "000000010000000000000002"),  # an end on a boundary needs only the segment before
        ("0/3000001", "000000010000000000000003"),
        ("0/2000100", "000000010000000000000002"),
        ("1/0", "0000000100000000000000FF"),
    ],
)
def test_the_last_segment_needed_to_reach_an_end_position_is_what_pg_walfile_name_says(end_lsn: str, name: str) -> None:
    assert last_wal_segment_name(1, end_lsn) == name


def test_an_end_position_must_be_past_the_start_of_wal() -> None:
    with pytest.raises(ValueError):
        last_wal_segment_name(1, "0/0")


@pytest.mark.parametrize("size", [0, 1000, 3 * MIB, 512 * 1024, 2048 * MIB])
def test_only_powers_of_two_from_1_mib_to_1_gib_are_segment_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="segment size"):
        check_segment_size(size)


@pytest.mark.parametrize("timeline", [0, 1 << 32])
def test_timelines_start_at_1_and_fit_in_32_bits(timeline: int) -> None:
    with pytest.raises(ValueError, match="timeline"):
        wal_segment_name(timeline, "0/2000028")


@pytest.mark.parametrize(
    "name",
    [
        "00000001000000000000002",
        "000000000000000000000002",
        "000000010000000000000100",
        "00000001000000000000000g",
        "00000001.history",
    ],
)
def test_only_segment_names_parse(name: str) -> None:
    with pytest.raises(ValueError, match="not a WAL segment file name"):
        parse_segment_name(name)


@settings(max_examples=300, deadline=None)
@given(
    timeline=st.integers(min_value=1, max_value=0xFFFFFFFF),
    position=st.integers(min_value=0, max_value=(1 << 64) - 1),
    size_shift=st.integers(min_value=20, max_value=30),
)
def test_a_segment_name_leads_back_to_the_range_holding_the_position(
    timeline: int, position: int, size_shift: int
) -> None:
    size = 1 << size_shift
    name = wal_segment_name(timeline, position, size)
    assert parse_segment_name(name, size) == (timeline, position // size)
    assert segment_start_lsn(name, size) <= position < segment_start_lsn(name, size) + size
    assert format_lsn(parse_lsn(format_lsn(position))) == format_lsn(position)
    assert sorted([name, wal_segment_name(timeline, min(position + size, (1 << 64) - 1), size)])[0] == name
