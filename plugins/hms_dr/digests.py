"""sha256 of files and streams: the proof every payload carries in its manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 4 << 20


def sha256_of_stream(stream: BinaryIO) -> tuple[str, int]:
    """Read ``stream`` to its end: (sha256 hex, size in bytes)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_of_file(path: Path) -> str:
    with path.open("rb") as handle:
        return sha256_of_stream(handle)[0]  # type: ignore[arg-type]
