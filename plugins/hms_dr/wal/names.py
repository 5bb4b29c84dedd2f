"""WAL file names and WAL positions, in one place.

What PostgreSQL's archiver hands over (segments, ``.history``, ``.backup``, ``.partial``) and the
timeline each name carries; and the arithmetic that ties a position to its segment, shared by
shipping, the base backup (the first and last segment a backup needs), point-in-time recovery
(which segments to fetch) and retention (which WAL a kept base backup needs). An LSN is a 64-bit
byte position written ``X/Y`` (high and low 32 bits, hex); a segment file name is the timeline,
then the segment number split into "log" and "seg" parts, each as 8 hex digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class WalFileKind(StrEnum):
    SEGMENT = "segment"  # 000000010000000A0000003F
    HISTORY = "history"  # 00000002.history
    BACKUP = "backup"  # 000000010000000A0000003F.00000028.backup
    PARTIAL = "partial"  # 000000010000000A0000003F.partial (archived at promotion)


_PATTERNS = (
    (WalFileKind.SEGMENT, re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}$")),
    (WalFileKind.HISTORY, re.compile(r"^([0-9A-F]{8})\.history$")),
    (WalFileKind.BACKUP, re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.[0-9A-F]{8}\.backup$")),
    (WalFileKind.PARTIAL, re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.partial$")),
)


@dataclass(frozen=True)
class WalFileName:
    """A parsed WAL file name: the name itself, what it is, and its timeline."""

    name: str
    kind: WalFileKind
    timeline: int


def parse_wal_name(name: str) -> WalFileName | None:
    """The parsed name, or None when ``name`` is not a file PostgreSQL archives."""
    for kind, pattern in _PATTERNS:
        match = pattern.match(name)
        if match:
            timeline = int(match.group(1), 16)
            if timeline == 0:
                return None  # timelines start at 1
            return WalFileName(name=name, kind=kind, timeline=timeline)
    return None


def wal_position(name: str) -> str | None:
    """The timeline-free position of a segment, .backup or .partial name (its last 16 hex digits:
    names of any timeline compare by it); None for .history files and other names."""
    parsed = parse_wal_name(name)
    if parsed is None or parsed.kind is WalFileKind.HISTORY:
        return None
    return name[8:24]


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


DEFAULT_WAL_SEGMENT_SIZE = 16 << 20
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_SEGMENT_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_MIN_SEGMENT_SIZE = 1 << 20
_MAX_SEGMENT_SIZE = 1 << 30


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> its byte position; ValueError for anything else."""
    match = _LSN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a WAL position (LSN) like 0/2000028")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position: int) -> str:
    """A byte position written as PostgreSQL writes it: '16/B374D848'."""
    if not 0 <= position < 1 << 64:
        raise ValueError(f"{position} is not a WAL position")
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def check_segment_size(segment_size: int) -> int:
    """The segment size, if PostgreSQL allows it (a power of two from 1 MiB to 1 GiB)."""
    if not _MIN_SEGMENT_SIZE <= segment_size <= _MAX_SEGMENT_SIZE or segment_size & (segment_size - 1):
        raise ValueError(f"{segment_size} is not a WAL segment size (a power of two from 1 MiB to 1 GiB)")
    return segment_size


def segment_file_name(timeline: int, segment_number: int, segment_size: int = DEFAULT_WAL_SEGMENT_SIZE) -> str:
    """The file name of segment ``segment_number`` (counted from 0) on ``timeline``."""
    if not 1 <= timeline <= 0xFFFFFFFF:
        raise ValueError(f"timeline {timeline} is out of range (1 to FFFFFFFF)")
    segments_per_id = 0x100000000 // check_segment_size(segment_size)
    return f"{timeline:08X}{segment_number // segments_per_id:08X}{segment_number % segments_per_id:08X}"


def wal_segment_name(timeline: int, lsn: int | str, segment_size: int = DEFAULT_WAL_SEGMENT_SIZE) -> str:
    """The segment file holding the byte at ``lsn``: where a backup's start LSN (or a record) lies."""
    position = parse_lsn(lsn) if isinstance(lsn, str) else lsn
    return segment_file_name(timeline, position // check_segment_size(segment_size), segment_size)


def last_wal_segment_name(timeline: int, end_lsn: int | str, segment_size: int = DEFAULT_WAL_SEGMENT_SIZE) -> str:
    """The segment holding the last byte before ``end_lsn``: the last file needed to reach an end
    position. An end exactly on a segment boundary needs only the segment before it (this is
    what pg_walfile_name() and pg_backup_stop() answer)."""
    position = parse_lsn(end_lsn) if isinstance(end_lsn, str) else end_lsn
    if position < 1:
        raise ValueError("an end position must be past the start of WAL")
    return wal_segment_name(timeline, position - 1, segment_size)


def parse_segment_name(name: str, segment_size: int = DEFAULT_WAL_SEGMENT_SIZE) -> tuple[int, int]:
    """'000000010000000A0000003F' -> (timeline, segment number); ValueError for other names."""
    match = _SEGMENT_NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a WAL segment file name")
    timeline, log_id, seg_id = (int(part, 16) for part in match.groups())
    segments_per_id = 0x100000000 // check_segment_size(segment_size)
    if timeline == 0 or seg_id >= segments_per_id:
        raise ValueError(f"{name!r} is not a WAL segment file name for {segment_size}-byte segments")
    return timeline, log_id * segments_per_id + seg_id


def segment_start_lsn(name: str, segment_size: int = DEFAULT_WAL_SEGMENT_SIZE) -> int:
    """The first byte position a segment file holds."""
    return parse_segment_name(name, segment_size)[1] * segment_size
