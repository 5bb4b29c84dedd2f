"""WAL file names: what PostgreSQL's archiver hands over, and the timeline each name carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class WalFileKind(str, Enum):
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
