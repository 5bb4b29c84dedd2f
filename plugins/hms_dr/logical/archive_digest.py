"""Content digests of a pg_dump custom-format archive, read as a stream: one per table, one for
the large objects.

A table's digest is order-independent: every row pg_dump wrote (one line of COPY text) is hashed
on its own, twice, with SipHash-1-3 under a fixed all-zero key (Python's own bytes hash, made
deterministic with PYTHONHASHSEED=0: the fastest hash the standard library runs without a
Python-level step per row), once over the row and once over the row and a NUL byte; each of the
two 64-bit hashes is added up modulo 2**64, and the row count goes with them. The same rows give
the same digest whatever order a scan returns them in, and one changed, added or removed row
changes it (short of a collision of both 64-bit sums). A large object is hashed with BLAKE2b-128
over its OID and bytes; those hashes are added up modulo 2**128.

The daily backup feeds this the archive it is streaming anyway (no second read of production);
the restore checks feed it ``pg_dump --data-only`` of the restored database, run with the same
session settings, so the same rows give byte-identical COPY text on both sides.

This file runs as a program of its own (``PYTHONHASHSEED=0 python -S archive_digest.py <
archive``; it prints one JSON object) so the hashing has a core of its own beside the upload, and
so it needs nothing but the standard library. It refuses to run where bytes do not hash as the
method says (another hash algorithm, a random seed): a digest must mean the same everywhere. The
archive layout it reads is PostgreSQL's (src/bin/pg_dump/pg_backup_archiver.c and
pg_backup_custom.c), versions 1.12 to 1.16 (PostgreSQL 11 to 18), as pg_dump writes it to a pipe
(to a seekable file, pg_dump 18 appends what this reader refuses).

A directory-format dump (``pg_dump -Fd -Z0``, pg_backup_directory.c) holds the same COPY text one
file per table (``<dump id>.dat``) and one file per large object (``blob_<oid>.dat``), and its
``toc.dat`` is the same table of contents with a file name where the custom format has an
offset. ``--members`` digests such files as they stream past the upload: the input is a series
of frames, a line ``<file name>\t<size>`` followed by exactly that many bytes, and the output is
one record per file (the rows' digest of a table file, the BLAKE2b hash of a large object; other
files are read and skipped). ``read_directory_toc`` maps the table files to their tables; the
caller puts the two together (``hms_dr.logical.content.DirectoryDigester``), so a table or large
object digests the same whichever format carried it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

METHOD = "copy-text-siphash13x2-sum-lo-blake2b128-v2"
_ROW_MODULUS = 1 << 64
_LARGE_OBJECT_MODULUS = 1 << 128
# hash() of this, under SipHash-1-3 with the all-zero key: a check that this interpreter computes the method.
_KNOWN_ANSWER = (b"hms-dr content digest", -3780951758713264936)
_BLOCK_DATA = 1
_BLOCK_LARGE_OBJECTS = 3
_READ_BYTES = 1 << 20
_CHUNK_HEADER = struct.Struct("<BI")  # a sign byte and a 4-byte length, as pg_dump writes an int
_END_OF_DATA = b"\\."  # pg_dump up to 17 ends each table's data with it
_FORMAT_CUSTOM = 1
_FORMAT_DIRECTORY = 3


class ArchiveError(ValueError):
    """The stream is not a custom-format archive this reader understands."""


@dataclass
class RelationDigest:
    rows: int = 0
    first: int = 0  # sum of hash(row)
    second: int = 0  # sum of hash(row + NUL)

    def add_lines(self, lines: list[bytes]) -> None:
        self.rows += len(lines)
        self.first += sum(map(hash, lines))
        self.second += sum(map(hash, map(bytes.__add__, lines, itertools.repeat(b"\x00"))))

    def record(self) -> dict[str, object]:
        return {"rows": self.rows, "digest": f"{self.first % _ROW_MODULUS:016x}{self.second % _ROW_MODULUS:016x}"}


@dataclass
class LargeObjectsDigest:
    count: int = 0
    total: int = 0

    def add(self, hash_of_one: bytes) -> None:
        self.count += 1
        self.total += int.from_bytes(hash_of_one)

    def record(self) -> dict[str, object]:
        return {"rows": self.count, "digest": f"{self.total % _LARGE_OBJECT_MODULUS:032x}"}


def check_interpreter() -> None:
    """ArchiveError unless bytes hash here as the method says (SipHash-1-3, key all zero)."""
    text, expected = _KNOWN_ANSWER
    if sys.hash_info.algorithm != "siphash13" or sys.flags.hash_randomization or hash(text) != expected:
        raise ArchiveError(
            f"this interpreter does not compute {METHOD} (bytes hash {sys.hash_info.algorithm}, "
            f"randomized {bool(sys.flags.hash_randomization)}): run it with PYTHONHASHSEED=0"
        )


@dataclass
class ArchiveDigest:
    """What one archive holds: tables by (schema, name), large objects, the archive's encoding."""

    encoding: str | None = None
    tables: dict[tuple[str, str], RelationDigest] = field(default_factory=dict)
    large_objects: LargeObjectsDigest = field(default_factory=LargeObjectsDigest)
    has_large_objects: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "method": METHOD,
            "encoding": self.encoding,
            "tables": [[schema, name, digest.record()] for (schema, name), digest in sorted(self.tables.items())],
            "large_objects": self.large_objects.record() if self.has_large_objects else None,
        }


@dataclass
class _TocEntry:
    dump_id: int
    desc: str
    schema: str | None
    tag: str
    definition: str
    data_file: str | None = None


class _Reader:
    """Buffered reads of the archive's primitive values (pg_backup_archiver.c ReadInt/ReadStr)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._position = 0
        self.int_size = 4
        self.offset_size = 8

    def take(self, count: int) -> bytes:
        while len(self._buffer) - self._position < count:
            chunk = self._stream.read(_READ_BYTES)
            if not chunk:
                raise ArchiveError("the archive ends early")
            del self._buffer[: self._position]
            self._position = 0
            self._buffer += chunk
        start = self._position
        self._position += count
        return bytes(self._buffer[start : self._position])

    def at_end(self) -> bool:
        if self._position < len(self._buffer):
            return False
        chunk = self._stream.read(_READ_BYTES)
        if not chunk:
            return True
        self._buffer = bytearray(chunk)
        self._position = 0
        return False

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:
        raw = self.take(1 + self.int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def str(self) -> str | None:
        length = self.int()
        if length < 0:
            return None
        return self.take(length).decode("utf-8", "surrogateescape")

    def chunks(self) -> Iterator[bytes]:
        """The length-prefixed chunks of one data block or large object, up to the zero length,
        joined into pieces of about _READ_BYTES (pg_dump writes a chunk per row: parsing them one
        read at a time would cost more than hashing the rows)."""
        unpack = _CHUNK_HEADER.unpack_from
        header = 1 + self.int_size
        if header != _CHUNK_HEADER.size:
            yield from self._chunks_one_by_one()
            return
        while True:
            buffer, position, end = self._buffer, self._position, len(self._buffer)
            pieces = []
            while position + header <= end:
                sign, length = unpack(buffer, position)
                if sign or length == 0 or position + header + length > end:
                    break
                pieces.append(buffer[position + header : position + header + length])
                position += header + length
            self._position = position
            if pieces:
                yield b"".join(pieces)
                continue
            length = self.int()  # a chunk that spans reads, the end, or a malformed length
            if length == 0:
                return
            if length < 0:
                raise ArchiveError(f"a data chunk of negative length {length}")
            yield self.take(length)

    def _chunks_one_by_one(self) -> Iterator[bytes]:
        while True:
            length = self.int()
            if length == 0:
                return
            if length < 0:
                raise ArchiveError(f"a data chunk of negative length {length}")
            yield self.take(length)


def digest_archive(stream: BinaryIO) -> ArchiveDigest:
    """Read a custom-format archive from ``stream`` to its end and digest its data. The digests
    mean the method only where ``check_interpreter`` passes (``main`` checks it first)."""
    reader = _Reader(stream)
    version, compressed = _read_header(reader)
    entries = {entry.dump_id: entry for entry in _read_toc(reader, version)}
    result = ArchiveDigest(encoding=_encoding(entries.values()))
    while not reader.at_end():
        block = reader.byte()
        dump_id = reader.int()
        entry = entries.get(dump_id)
        if entry is None:
            raise ArchiveError(f"a data block for dump id {dump_id}, which the table of contents does not list")
        if block == _BLOCK_DATA:
            digest = result.tables.setdefault((entry.schema or "", entry.tag), RelationDigest())
            _digest_rows(reader.chunks(), compressed, digest)
        elif block == _BLOCK_LARGE_OBJECTS:
            result.has_large_objects = True
            _digest_large_objects(reader, compressed, result.large_objects)
        else:
            raise ArchiveError(f"unknown data block type {block}")
    return result


def _read_header(reader: _Reader, archive_format: int = _FORMAT_CUSTOM) -> tuple[tuple[int, int], bool]:
    """Check the header: the archive version, and whether data blocks are zlib-compressed."""
    if reader.take(5) != b"PGDMP":
        raise ArchiveError("not a pg_dump custom-format archive (no PGDMP header)")
    major, minor, _revision = reader.byte(), reader.byte(), reader.byte()
    if (major, minor) < (1, 12) or (major, minor) > (1, 16):
        raise ArchiveError(f"archive version {major}.{minor} is not one this reader knows (1.12 to 1.16)")
    reader.int_size = reader.byte()
    reader.offset_size = reader.byte()
    if reader.byte() != archive_format:
        wanted = "custom" if archive_format == _FORMAT_CUSTOM else "directory"
        raise ArchiveError(f"not a {wanted}-format archive (another pg_dump format)")
    if (major, minor) >= (1, 15):
        algorithm = reader.byte()  # 0 none, 1 gzip, 2 lz4, 3 zstd
        if algorithm not in (0, 1):
            raise ArchiveError(f"data compressed with algorithm {algorithm}: only none and gzip can be read")
        compressed = algorithm == 1
    else:
        compressed = reader.int() != 0
    for _ in range(7):  # the creation time
        reader.int()
    for _ in range(3):  # database name, server version, pg_dump version
        reader.str()
    return (major, minor), compressed


def _read_toc(reader: _Reader, version: tuple[int, int], archive_format: int = _FORMAT_CUSTOM) -> list[_TocEntry]:
    """The table of contents (ReadToc), keeping what the data blocks need."""
    entries = []
    for _ in range(reader.int()):
        dump_id = reader.int()
        reader.int()  # had a data dumper
        reader.str()  # table oid
        reader.str()  # oid
        tag = reader.str() or ""
        desc = reader.str() or ""
        reader.int()  # section
        definition = reader.str() or ""
        reader.str()  # drop statement
        reader.str()  # copy statement
        schema = reader.str()
        reader.str()  # tablespace
        if version >= (1, 14):
            reader.str()  # table access method
        if version >= (1, 16):
            reader.int()  # relkind
        reader.str()  # owner
        reader.str()  # "false": tables WITH OIDS are gone
        while reader.str() is not None:  # dependencies, up to a NULL string
            pass
        if archive_format == _FORMAT_CUSTOM:
            reader.take(1 + reader.offset_size)  # where the data is, when the file was seekable
            data_file = None
        else:
            data_file = reader.str()  # the entry's data file (a table's <id>.dat, blobs' .toc), if any
        entries.append(_TocEntry(dump_id, desc, schema, tag, definition, data_file))
    return entries


def _encoding(entries: Iterable[_TocEntry]) -> str | None:
    """The archive's client encoding, from its ENCODING entry (SET client_encoding = 'UTF8';)."""
    for entry in entries:
        if entry.desc == "ENCODING":
            parts = entry.definition.split("'")
            return parts[1] if len(parts) >= 3 else None
    return None


def _digest_rows(chunks: Iterator[bytes], compressed: bool, digest: RelationDigest) -> None:
    """Digest one table's COPY text: lines up to pg_dump's end-of-data marker (a line ``\\.``,
    which no row can be: COPY escapes a backslash in a value as two)."""
    pending = b""
    ended = False
    for data in _plain(chunks, compressed):
        if ended:
            if data.strip(b"\n"):
                raise ArchiveError("rows after the end-of-data marker of a table")
            continue
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        if _END_OF_DATA in lines:
            ended = True
            rest = [*lines[lines.index(_END_OF_DATA) + 1 :], pending]
            lines = lines[: lines.index(_END_OF_DATA)]
            if any(rest):
                raise ArchiveError("rows after the end-of-data marker of a table")
        digest.add_lines(lines)
    if pending and not ended:
        digest.add_lines([pending])


def _digest_large_objects(reader: _Reader, compressed: bool, digest: LargeObjectsDigest) -> None:
    while True:
        oid = reader.int()
        if oid == 0:
            return
        hashed = hashlib.blake2b(f"{oid}:".encode(), digest_size=16)
        for data in _plain(reader.chunks(), compressed):
            hashed.update(data)
        digest.add(hashed.digest())


def _plain(chunks: Iterator[bytes], compressed: bool) -> Iterator[bytes]:
    if not compressed:
        yield from chunks
        return
    inflater = zlib.decompressobj()
    for chunk in chunks:
        data = inflater.decompress(chunk)
        if data:
            yield data
    rest = inflater.flush()
    if rest:
        yield rest


@dataclass(frozen=True)
class DirectoryToc:
    """What a directory dump's toc.dat says: the archive's encoding, each table data file's
    table, and the files listing its large objects (blobs.toc up to 16, blobs_<id>.toc after)."""

    encoding: str | None
    table_files: dict[str, tuple[str, str]]  # "<dump id>.dat" -> (schema, table)
    large_object_tocs: tuple[str, ...]


def read_directory_toc(stream: BinaryIO) -> DirectoryToc:
    """Read a directory dump's toc.dat (no hashing: safe in any interpreter)."""
    reader = _Reader(stream)
    version, compressed = _read_header(reader, _FORMAT_DIRECTORY)
    if compressed:
        raise ArchiveError("the directory dump's data files are compressed: only -Z0 dumps can be digested")
    entries = _read_toc(reader, version, _FORMAT_DIRECTORY)
    tables: dict[str, tuple[str, str]] = {}
    large_object_tocs: list[str] = []
    for entry in entries:
        if not entry.data_file:
            continue
        if entry.desc == "TABLE DATA":
            tables[entry.data_file] = (entry.schema or "", entry.tag)
        elif entry.desc in ("BLOBS", "LARGE OBJECTS"):
            large_object_tocs.append(entry.data_file)
    return DirectoryToc(_encoding(entries), tables, tuple(large_object_tocs))


def table_data_entries(stream: BinaryIO, *, directory: bool = False) -> dict[int, tuple[str, str]]:
    """Dump id -> (schema, table) of every TABLE DATA entry in the table of contents of a custom
    archive, or of a directory dump's toc.dat (``directory``); read no further (no hashing)."""
    archive_format = _FORMAT_DIRECTORY if directory else _FORMAT_CUSTOM
    reader = _Reader(stream)
    version, _compressed = _read_header(reader, archive_format)
    return {
        entry.dump_id: (entry.schema or "", entry.tag)
        for entry in _read_toc(reader, version, archive_format)
        if entry.desc == "TABLE DATA"
    }


def large_object_files(listing: bytes) -> dict[str, int]:
    """A blobs toc's lines ``<oid> blob_<oid>.dat`` as file name -> oid."""
    files: dict[str, int] = {}
    for line in listing.decode("ascii").splitlines():
        if not line.strip():
            continue
        oid, _, name = line.partition(" ")
        if not oid.isdigit() or not name:
            raise ArchiveError(f"a line of a large objects' list that is not <oid> <file>: {line[:80]!r}")
        files[name.strip()] = int(oid)
    return files


def _member_kind(name: str) -> tuple[str, int | None]:
    """How a directory dump's file is digested: its rows, as a large object (with its oid), or not."""
    if name.endswith(".dat") and name[: -len(".dat")].isdigit():
        return "rows", None
    if name.startswith("blob_") and name.endswith(".dat") and name[len("blob_") : -len(".dat")].isdigit():
        return "large_object", int(name[len("blob_") : -len(".dat")])
    return "skipped", None


def digest_members(stream: BinaryIO) -> dict[str, dict[str, object]]:
    """Digest framed files of a -Z0 directory dump (see the module's docstring): file name ->
    {"rows", "digest"} for a table's data, {"oid", "hash"} for a large object, {"skipped": size}."""
    reader = _Reader(stream)
    records: dict[str, dict[str, object]] = {}
    while not reader.at_end():
        header = bytearray()
        while (byte := reader.take(1)) != b"\n":
            header += byte
            if len(header) > 4096:
                raise ArchiveError("a member header longer than 4096 bytes")
        name, _, size_text = header.decode("utf-8", "surrogateescape").partition("\t")
        if not size_text.isdigit() or not name or name in records:
            raise ArchiveError(f"a malformed or repeated member header {name[:80]!r}")
        size = int(size_text)
        pieces = _member_pieces(reader, size)
        kind, oid = _member_kind(name)
        if kind == "rows":
            digest = RelationDigest()
            _digest_rows(pieces, False, digest)
            records[name] = digest.record()
        elif kind == "large_object":
            hashed = hashlib.blake2b(f"{oid}:".encode(), digest_size=16)
            for piece in pieces:
                hashed.update(piece)
            records[name] = {"oid": oid, "hash": hashed.hexdigest()}
        else:
            for _ in pieces:
                pass
            records[name] = {"skipped": size}
    return records


def _member_pieces(reader: _Reader, size: int) -> Iterator[bytes]:
    left = size
    while left:
        piece = reader.take(min(left, _READ_BYTES))
        left -= len(piece)
        yield piece


def main() -> int:
    try:
        check_interpreter()
        if sys.argv[1:] == ["--members"]:
            json.dump({"method": METHOD, "members": digest_members(sys.stdin.buffer)}, sys.stdout)
            sys.stdout.write("\n")
            return 0
        result = digest_archive(sys.stdin.buffer)
    except ArchiveError as exc:
        print(f"archive_digest: {exc}", file=sys.stderr)
        return 1
    json.dump(result.to_json(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
