"""A tar stream read as it arrives: pg_basebackup's base.tar, member by member, without a file.

tarfile's stream mode can neither hand a member's bytes on while they are hashed nor leave members
out of what it passes on; the streamed base backup needs both (``physical.streamed``). This reader
knows the ustar subset pg_basebackup writes (regular files, directories, symbolic links, names
under 100 bytes, each header checksummed) and refuses the rest in one line. A stream that ends
before the end-of-archive blocks is truncated, whatever it held until then: that is how a killed
pg_basebackup or a cut connection shows, and such a stream must never become a stored set.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from hms_dr.errors import BackupVerificationFailed

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
DATA_CHUNK = 1 << 20


class MemberKind(Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


_KINDS = {
    tarfile.REGTYPE: MemberKind.FILE,
    tarfile.AREGTYPE: MemberKind.FILE,
    tarfile.DIRTYPE: MemberKind.DIRECTORY,
    tarfile.SYMTYPE: MemberKind.SYMLINK,
}


class TarStreamBroken(BackupVerificationFailed):
    """The stream is not a whole tar archive: truncated, a corrupt header, a member type pg_basebackup never writes."""


@dataclass(frozen=True)
class MemberHeader:
    """One member's header: its path in the data directory and the 512 bytes it arrived as."""

    path: str  # "./pg_wal/archive_status" arrives as such; kept without the "./"
    kind: MemberKind
    size: int
    raw: bytes

    @property
    def padding(self) -> bytes:
        return padding_for(self.size)


def padding_for(size: int) -> bytes:
    """The zeros that round a member's data up to whole blocks."""
    return bytes(-size % BLOCK)


class TarStream:
    """Iterate ``(header, data chunks)`` over a tar stream; each member's chunks must be consumed
    (or abandoned by moving to the next member, which skips them) in order."""

    def __init__(self, source: BinaryIO, *, what: str) -> None:
        self._source = source
        self._what = what
        self.bytes_read = 0
        self.last_path = ""  # for the errors: where the stream broke

    def _read(self, size: int) -> bytes:
        data = self._source.read(size)
        self.bytes_read += len(data)
        return data

    def _read_exact(self, size: int, during: str) -> bytes:
        parts = []
        missing = size
        while missing:
            chunk = self._read(missing)
            if not chunk:
                raise self._broken(f"the stream ended {during}")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def _broken(self, why: str) -> TarStreamBroken:
        after = f" after {self.last_path!r}" if self.last_path else " at its start"
        return TarStreamBroken(
            f"{self._what} is not a whole tar archive: {why}{after} ({self.bytes_read} bytes read)",
            hint="the backup was not stored; rerun it, and check the server log and the network if it fails again",
        )

    def members(self) -> Iterator[tuple[MemberHeader, Iterator[bytes]]]:
        while True:
            block = self._read_exact(BLOCK, "where a member's header or the end of the archive was due")
            if block == bytes(BLOCK):
                self._read_exact(BLOCK, "inside the end-of-archive marker")
                self._drain_trailer()
                return
            header = self._parse(block)
            data = self._data(header)
            yield header, data
            for _ in data:  # what the caller did not read is skipped, in order
                pass
            self._read_exact(len(header.padding), f"in the padding of {header.path!r}")
            self.last_path = header.path

    def _parse(self, block: bytes) -> MemberHeader:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise self._broken(f"a corrupt member header ({exc})") from None
        kind = _KINDS.get(info.type)
        if kind is None:
            raise self._broken(f"member {info.name!r} has tar type {info.type!r}, which pg_basebackup never writes")
        size = info.size if kind is MemberKind.FILE else 0
        return MemberHeader(info.name.removeprefix("./"), kind, size, block)

    def _data(self, header: MemberHeader) -> Iterator[bytes]:
        remaining = header.size
        while remaining:
            chunk = self._read(min(remaining, DATA_CHUNK))
            if not chunk:
                raise self._broken(f"the stream ended inside {header.path!r} with {remaining} of its bytes missing")
            remaining -= len(chunk)
            yield chunk

    def _drain_trailer(self) -> None:
        """After the two zero blocks a writer may pad to its record size, with zeros only."""
        while chunk := self._read(DATA_CHUNK):
            if chunk.count(0) != len(chunk):
                raise self._broken("data after the end-of-archive marker")


def tar_of_files(files: Iterable[tuple[str, Path]]) -> Iterator[bytes]:
    """A ustar archive of ``(name, path)`` regular files, as chunks (owner-only modes): the WAL of
    a streamed backup becomes pg_wal.tar on its way to the store, never a second copy on disk."""
    for name, path in files:
        size = path.stat().st_size
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(path.stat().st_mtime)
        yield info.tobuf(format=tarfile.USTAR_FORMAT)
        with path.open("rb") as source:
            copied = 0
            while chunk := source.read(DATA_CHUNK):
                copied += len(chunk)
                yield chunk
        if copied != size:
            raise BackupVerificationFailed(f"{path} changed size while it was archived ({size} -> {copied} bytes)")
        yield padding_for(size)
    yield END_OF_ARCHIVE


class ChunkReader:
    """A read()-able view of an iterator of chunks (a streams.Pipeline source); an exception the
    iterator raises reaches the reader, so the pipeline aborts and the upload is not completed."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = chunk
        if size < 0 or size >= len(self._pending):
            chunk, self._pending = self._pending, b""
            return chunk
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk

    def readable(self) -> bool:
        return True
