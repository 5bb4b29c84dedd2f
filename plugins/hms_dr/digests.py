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


class PlainDigest:
    """A tap on plain bytes passing by: their sha256 and size so far (read live for progress)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size_bytes = 0

    def __call__(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.size_bytes += len(chunk)

    @property
    def sha256(self) -> str:
        return self.hash.hexdigest()
