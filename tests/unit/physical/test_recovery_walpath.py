"""The WAL path of a recovery: timelines from history files, the segment copies PostgreSQL reads,
and the first file the store lacks."""

from __future__ import annotations

import pytest

from hms_dr.errors import ManifestInvalid
from hms_dr.physical.walpath import (
    TimelineSpan,
    history_reason,
    newest_on_path,
    newest_timeline,
    parse_history,
    plan_wal_path,
    timeline_for,
)
from hms_dr.wal.names import segment_file_name

SEG = 16 << 20
HISTORY_3 = "1\t0/50000A0\tno recovery target specified\n\n# a comment\n2\t0/7000060\tbefore 2026-11-24 01:02:03+00\n"


def name(timeline: int, segno: int) -> str:
    return segment_file_name(timeline, segno, SEG)


def test_a_history_file_gives_the_path_to_its_timeline() -> None:
    assert parse_history(HISTORY_3, 3) == (
        TimelineSpan(1, None, 0x50000A0),
        TimelineSpan(2, 0x50000A0, 0x7000060),
        TimelineSpan(3, 0x7000060, None),
    )
    assert history_reason(HISTORY_3) == (2, 0x7000060, "before 2026-11-24 01:02:03+00")


@pytest.mark.parametrize("text", ["1\tnot-an-lsn\tx\n", "2\t0/10\tx\n1\t0/20\tx\n", "3\t0/10\tx\n"])
def test_a_malformed_history_file_is_refused(text: str) -> None:
    with pytest.raises(ManifestInvalid, match=r"history file 00000003\.history"):
        parse_history(text, 3)


def test_the_switch_segment_is_read_from_the_new_timeline() -> None:
    spans = parse_history(HISTORY_3, 3)
    assert [timeline_for(spans, s, SEG) for s in (4, 5, 6, 7, 8)] == [1, 2, 2, 3, 3]


def test_the_newest_timeline_comes_from_history_files_and_segment_names() -> None:
    assert newest_timeline(set()) == 1
    assert newest_timeline({name(1, 3), "00000002.history", name(2, 5) + ".partial"}) == 2


def test_the_newest_segment_on_the_path_ignores_abandoned_timeline_tails() -> None:
    spans = parse_history(HISTORY_3, 3)
    stored = {name(1, 4), name(1, 5), name(1, 9), name(2, 5), name(2, 6), name(3, 7), name(3, 8)}
    assert newest_on_path(stored, spans, SEG) == name(3, 8)  # 1/9 was written after timeline 1 was left


def test_a_path_over_two_timelines_with_everything_stored_has_no_gap() -> None:
    spans = parse_history(HISTORY_3, 3)
    stored = {name(1, 3), name(1, 4), name(2, 5), name(2, 6), name(3, 7), name(3, 8)}
    path = plan_wal_path(stored, spans, first_segment=name(1, 3), segment_size_bytes=SEG)
    assert path.expected == (name(1, 3), name(1, 4), name(2, 5), name(2, 6), name(3, 7), name(3, 8))
    assert path.missing == () and path.newest == name(3, 8) and path.end_lsn() == 9 * SEG
    assert path.describe_spans() == "1 -> 2 (from 0/50000A0) -> 3 (from 0/7000060)"


def test_the_first_missing_file_is_named_and_the_base_backup_s_own_wal_is_not_missing() -> None:
    spans = (TimelineSpan(1, None, None),)
    stored = {name(1, 4), name(1, 6), name(1, 7)}  # 3 is carried by the base backup; 5 is lost
    path = plan_wal_path(stored, spans, first_segment=name(1, 3), carried={name(1, 3)}, segment_size_bytes=SEG)
    assert path.missing == (name(1, 5),) and path.first_missing == name(1, 5)
    assert path.before(name(1, 5)) == name(1, 4)


def test_an_archive_that_ends_before_the_base_backup_expects_nothing() -> None:
    path = plan_wal_path({name(1, 1)}, (TimelineSpan(1, None, None),), first_segment=name(1, 3), segment_size_bytes=SEG)
    assert path.expected == () and path.missing == ()
