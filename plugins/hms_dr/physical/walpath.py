"""The WAL path of a recovery: which archived segments, on which timelines, replay must read to
get from a base backup to the newest WAL in the store, and the first one the store lacks.

PostgreSQL follows ``recovery_target_timeline = 'latest'`` through the newest timeline's history
file; for each segment it reads the copy of the newest timeline that had begun by then (the
segment holding a switch point comes from the new timeline). This module mirrors that rule so a
gap in the stored WAL is found, and named, before a server is started. Pure functions only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from hms_dr.errors import ManifestInvalid
from hms_dr.wal.names import (
    DEFAULT_WAL_SEGMENT_SIZE,
    WalFileKind,
    format_lsn,
    history_name,
    parse_lsn,
    parse_segment_name,
    parse_wal_name,
    segment_file_name,
)

DEFAULT_SEGMENT_SIZE_BYTES = DEFAULT_WAL_SEGMENT_SIZE


def segment_of(lsn: int, segment_size_bytes: int) -> int:
    """The number of the segment holding ``lsn``."""
    return lsn // segment_size_bytes


def segment_name(timeline: int, segno: int, segment_size_bytes: int) -> str:
    return segment_file_name(timeline, segno, segment_size_bytes)


@dataclass(frozen=True)
class TimelineSpan:
    """One timeline of the recovery path: it begins at ``begin_lsn`` (None: from the start) and
    was left at ``end_lsn`` (None: the newest timeline, still open)."""

    timeline: int
    begin_lsn: int | None
    end_lsn: int | None


def parse_history(text: str, timeline: int) -> tuple[TimelineSpan, ...]:
    """The path to ``timeline`` from its history file (``parentTLI<tab>switchpoint<tab>reason``
    lines), oldest timeline first, ending with ``timeline`` itself."""
    spans: list[TimelineSpan] = []
    begin: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 2)
        try:
            parent = int(fields[0])
            switchpoint = parse_lsn(fields[1])
        except (ValueError, IndexError) as exc:
            raise ManifestInvalid(
                f"history file {history_name(timeline)} line {number} is malformed: {stripped[:80]!r}"
            ) from exc
        if spans and parent <= spans[-1].timeline:
            raise ManifestInvalid(
                f"history file {history_name(timeline)} lists timelines out of order at line {number}"
            )
        spans.append(TimelineSpan(parent, begin, switchpoint))
        begin = switchpoint
    if spans and timeline <= spans[-1].timeline:
        raise ManifestInvalid(
            f"history file {history_name(timeline)} names a parent timeline not older than {timeline}"
        )
    spans.append(TimelineSpan(timeline, begin, None))
    return tuple(spans)


def history_reason(text: str) -> tuple[int, int, str] | None:
    """(parent timeline, switch point, reason) of a history file's last line, or None."""
    for line in reversed(text.splitlines()):
        fields = line.strip().split(None, 2)
        if len(fields) >= 2 and not fields[0].startswith("#"):
            return int(fields[0]), parse_lsn(fields[1]), fields[2].strip() if len(fields) > 2 else ""
    return None


def newest_timeline(stored_names: Collection[str]) -> int:
    """The newest timeline the store knows, from history files and segment names (1 if none)."""
    timelines = [1]
    for name in stored_names:
        parsed = parse_wal_name(name)
        if parsed is not None and parsed.kind in (WalFileKind.SEGMENT, WalFileKind.HISTORY):
            timelines.append(parsed.timeline)
    return max(timelines)


def timeline_for(spans: Sequence[TimelineSpan], segno: int, segment_size_bytes: int) -> int:
    """The timeline whose copy of segment ``segno`` replay reads (PostgreSQL's XLogFileReadAnyTLI)."""
    for span in reversed(spans):
        if span.begin_lsn is None or segment_of(span.begin_lsn, segment_size_bytes) <= segno:
            return span.timeline
    return spans[0].timeline


@dataclass(frozen=True)
class WalPath:
    """The segments replay reads from ``first`` to the newest one stored on the path."""

    spans: tuple[TimelineSpan, ...]
    segment_size_bytes: int
    expected: tuple[str, ...]  # in replay order
    missing: tuple[str, ...]  # expected names the store lacks (and the base backup does not carry)
    newest: str | None  # the newest stored segment on the path

    @property
    def first_missing(self) -> str | None:
        return self.missing[0] if self.missing else None

    def before(self, name: str) -> str | None:
        """The expected segment just before ``name`` (None for the first)."""
        index = self.expected.index(name)
        return self.expected[index - 1] if index > 0 else None

    def end_lsn(self) -> int | None:
        """The position just after the newest stored segment on the path."""
        if self.newest is None:
            return None
        return (parse_segment_name(self.newest, self.segment_size_bytes)[1] + 1) * self.segment_size_bytes

    def describe_spans(self) -> str:
        return " -> ".join(
            f"{s.timeline}" + (f" (from {format_lsn(s.begin_lsn)})" if s.begin_lsn is not None else "")
            for s in self.spans
        )


def newest_on_path(stored_names: Collection[str], spans: Sequence[TimelineSpan], segment_size_bytes: int) -> str | None:
    """The newest stored segment replay along ``spans`` would read (None when there is none)."""
    best: tuple[int, str] | None = None
    on_path = {span.timeline for span in spans}
    for name in stored_names:
        parsed = parse_wal_name(name)
        if parsed is None or parsed.kind is not WalFileKind.SEGMENT or parsed.timeline not in on_path:
            continue
        timeline, segno = parse_segment_name(name, segment_size_bytes)
        if timeline_for(spans, segno, segment_size_bytes) != timeline:
            continue  # a timeline's segment after it was left: another history
        if best is None or segno > best[0]:
            best = (segno, name)
    return None if best is None else best[1]


def plan_wal_path(
    stored_names: Collection[str],
    spans: Sequence[TimelineSpan],
    *,
    first_segment: str,
    carried: Collection[str] = (),
    segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES,
) -> WalPath:
    """The segments from ``first_segment`` (a base backup's start) to the newest stored one on the
    path; ``carried`` are segments the base backup holds itself (its pg_wal.tar)."""
    newest = newest_on_path(stored_names, spans, segment_size_bytes)
    _, first = parse_segment_name(first_segment, segment_size_bytes)
    last = first - 1 if newest is None else parse_segment_name(newest, segment_size_bytes)[1]
    expected = tuple(
        segment_name(timeline_for(spans, s, segment_size_bytes), s, segment_size_bytes) for s in range(first, last + 1)
    )
    stored = set(stored_names)
    available = stored | set(carried)
    missing = tuple(name for name in expected if name not in available)
    return WalPath(tuple(spans), segment_size_bytes, expected, missing, newest)
