"""The policy's ``compression:`` section: the method, level and threads the payloads are
compressed with."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hms_dr.policy.reader import PolicyReader


class CompressionMethod(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


@dataclass(frozen=True)
class CompressionPolicy:
    method: CompressionMethod
    level: int
    threads: int


def parse_compression(reader: PolicyReader) -> CompressionPolicy:
    """The ``compression:`` section; the highest level depends on the method (zstd 19, else 9)."""
    method = reader.choice("compression.method", CompressionMethod)
    return CompressionPolicy(
        method=method,
        level=reader.integer("compression.level", minimum=0, maximum=19 if method is CompressionMethod.ZSTD else 9),
        threads=reader.integer("compression.threads", minimum=0, maximum=64),
    )
