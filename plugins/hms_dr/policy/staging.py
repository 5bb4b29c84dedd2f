"""The policy's ``staging:`` section: the local folder payloads pass through, and the free space
a run needs there before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hms_dr.policy.reader import PolicyReader


@dataclass(frozen=True)
class StagingPolicy:
    dir: Path
    min_free_mib: int
    reserve_ratio: float


def parse_staging(reader: PolicyReader) -> StagingPolicy:
    return StagingPolicy(
        dir=Path(reader.absolute_path("staging.dir")),
        min_free_mib=reader.integer("staging.min_free_mib", minimum=0),
        reserve_ratio=reader.number("staging.reserve_ratio", minimum=1.0),
    )
