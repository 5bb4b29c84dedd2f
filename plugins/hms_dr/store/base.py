"""The store interface both drivers implement, the records it returns, the rules for keys, and
the helpers every driver shares (progress, a guarded reader, the writability probe)."""

from __future__ import annotations

import builtins
import contextlib
import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from hms_dr.errors import ChecksumMismatch, HmsDrError

DEFAULT_PART_SIZE_BYTES = 32 * 2**20
PROGRESS_EVERY_BYTES = 8 * 2**20
MAX_KEY_BYTES = 1024  # S3's limit; the file driver keeps the same rule so keys stay portable

# The file driver's in-flight writes: `.<name>.partial-<16 hex>`. Keys may not look like this, so
# `list` can skip them without ever hiding a real object.
TEMP_NAME = re.compile(r"^\..+\.partial-[0-9a-f]{16}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class StoreFeatures:
    """What a store can do; callers branch on these, never on the driver class."""

    needs_fsync: bool
    supports_object_lock: bool
    local_path: Path | None  # the file driver's root; None for remote stores


@dataclass(frozen=True)
class StoredObject:
    """One object as listed or stat'ed: its key relative to the store, size and mtime (UTC).

    ``stat`` also reports an S3 Object Lock: the retention date and whether a legal hold is on
    (a listing does not carry them, and the file driver has no locks).
    """

    key: str
    size_bytes: int
    modified_at: datetime
    retained_until: datetime | None = None
    legal_hold: bool = False

    def locked_at(self, moment: datetime) -> bool:
        """Whether Object Lock forbids deleting or replacing this object at ``moment``."""
        return self.legal_hold or (self.retained_until is not None and self.retained_until > moment)


OBJECT_LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")


@dataclass(frozen=True)
class ObjectLockRetention:
    """The retention every upload carries when the bucket has Object Lock: a mode and a period.

    COMPLIANCE cannot be shortened or lifted by anyone, the root account included, until it
    ends; GOVERNANCE can be, by a role allowed to bypass it.
    """

    mode: str = "COMPLIANCE"
    days: int = 90

    def __post_init__(self) -> None:
        if self.mode not in OBJECT_LOCK_MODES:
            raise ValueError(f"object lock mode must be one of {', '.join(OBJECT_LOCK_MODES)}, got {self.mode!r}")
        if self.days < 1:
            raise ValueError(f"object lock retention must be at least 1 day, got {self.days}")


@dataclass(frozen=True)
class PutResult:
    """What `put` wrote: the key, and the size and sha256 (hex) of exactly the bytes stored."""

    key: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Expected:
    """The size and sha256 (hex) a stream must have for `put` to store it: checked on the bytes
    as they pass, before the object is committed, so a mismatch stores nothing."""

    size_bytes: int
    sha256: str

    def check(self, where: str, size_bytes: int, sha256: str) -> None:
        """ChecksumMismatch (one line) unless ``size_bytes`` and ``sha256`` are these."""
        if (size_bytes, sha256) != (self.size_bytes, self.sha256):
            raise ChecksumMismatch(
                f"the bytes sent to {where} are {size_bytes} bytes with sha256 {sha256[:16]}…, not the "
                f"{self.size_bytes} bytes with sha256 {self.sha256[:16]}… expected: nothing stored"
            )


class Store(Protocol):
    """One configured store. Keys are relative POSIX paths; see :func:`validate_key`."""

    url: str
    features: StoreFeatures

    def put(
        self,
        key: str,
        src: BinaryIO,
        *,
        overwrite: bool = False,
        progress: Callable[[int], None] | None = None,
        expect: Expected | None = None,
    ) -> PutResult:
        """Stream `src` to `key`; refuse (StoreRefused) if it exists unless `overwrite`; with
        `expect`, store nothing (ChecksumMismatch) unless the bytes are the expected ones."""
        ...

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = False) -> PutResult:
        """Store a small in-memory payload under `key`."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open `key` for a streaming read (a context manager supporting ``read(n)``)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Read the whole object at `key` into memory."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    def stat(self, key: str) -> StoredObject:
        """Size and mtime of `key`; ObjectMissing if absent."""
        ...

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        """Every object whose key starts with `prefix` (recursive), sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; ObjectMissing if absent."""
        ...

    def free_bytes(self) -> int | None:
        """Space left for new objects, or None when the store has no meaningful limit."""
        ...

    def describe(self, key: str) -> str:
        """Where `key` lives, for messages to an operator."""
        ...


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative POSIX key, else raise ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"store key is longer than {MAX_KEY_BYTES} bytes: {key[:60]!r}...")
    if _CONTROL.search(key):
        raise ValueError(f"store key contains a control character: {key!r}")
    if "\\" in key:
        raise ValueError(f"store key contains a backslash: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"store key must be relative, got {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"store key has an empty, '.' or '..' segment: {key!r}")
        if TEMP_NAME.match(segment):
            raise ValueError(f"store key looks like an in-flight temp file: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is "" or a key, optionally ending in "/"; else raise ValueError."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class ProgressMeter:
    """Calls `progress` with the running byte count at most once per `every_bytes`, plus at the end."""

    def __init__(self, progress: Callable[[int], None] | None, every_bytes: int = PROGRESS_EVERY_BYTES) -> None:
        self._progress = progress
        self._every_bytes = every_bytes
        self._reported = 0
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        if self._progress is not None and self.total - self._reported >= self._every_bytes:
            self._reported = self.total
            self._progress(self.total)

    def finish(self) -> None:
        if self._progress is not None and self._reported != self.total:
            self._reported = self.total
            self._progress(self.total)


class GuardedReader(io.RawIOBase):
    """A raw reader whose I/O errors are translated into store errors by `translate`."""

    def __init__(
        self,
        raw: Any,
        translate: Callable[[BaseException], HmsDrError],
        *,
        catch: tuple[type[BaseException], ...] = (OSError,),
    ) -> None:
        super().__init__()
        self._raw = raw
        self._translate = translate
        self._catch = catch

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            chunk = self._raw.read(len(view))
        except self._catch as exc:
            raise self._translate(exc) from exc
        n = len(chunk)
        view[:n] = chunk
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()


def buffered(raw: io.RawIOBase, buffer_size: int = 2**20) -> BinaryIO:
    """Wrap a raw reader so ``read(n)`` returns n bytes unless at EOF."""
    return io.BufferedReader(raw, buffer_size=buffer_size)


def check_writable(store: Store, probe_prefix: str) -> None:
    """Prove `store` accepts a write, a read and a delete under `probe_prefix`; leave nothing behind."""
    probe_id = uuid.uuid4().hex
    key = f"{probe_prefix.rstrip('/')}/.preflight-{probe_id}" if probe_prefix else f".preflight-{probe_id}"
    payload = f"hms-dr preflight probe {probe_id}\n".encode()
    store.put_bytes(key, payload)
    try:
        read_back = store.get_bytes(key)
        if read_back != payload:
            raise ChecksumMismatch(
                f"preflight probe {store.describe(key)} read back {len(read_back)} bytes that differ "
                f"from the {len(payload)} bytes written",
                hint="the store corrupts or caches data; check the NAS mount or the S3 endpoint",
            )
    except BaseException:
        # The read failed: still try to clean up, but report the first failure, not the cleanup's.
        with contextlib.suppress(Exception):
            store.delete(key)
        raise
    # Delete is part of the probe: retention needs it, so a refusal here must surface.
    store.delete(key)
