"""Reading a large remote object as ranges fetched ahead on a few threads, in order.

One GET stream is bounded by one connection's throughput (S3 serves a single stream at a fraction
of what the network carries); the sha256 read-back of an offsite copy and the download of a
restore read every byte in order. :class:`RangedReader` keeps ``streams`` ranged GETs in flight
ahead of the reader and hands their bytes over in order, so the reader (hashing, decrypting)
overlaps the fetching. At most ``streams + 1`` ranges are held at once, whatever the object's
size. A failed range fails the read that reaches it; ``close`` cancels the ranges not yet
fetched and waits for the ones in flight, so no thread outlives the reader.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hms_dr.errors import StoreUnavailable

READ_STREAMS = 4
RANGE_BYTES = 8 * 2**20  # s3transfer's default chunk: a few round trips per part, little memory


class RangedReader(io.RawIOBase):
    """The ``size`` bytes of the object ``where`` names, fetched as ranges by ``fetch(first, last)``
    (inclusive byte offsets, as an HTTP Range says), ``streams`` at a time, read in order;
    ``first``: its first bytes, already fetched."""

    def __init__(
        self,
        fetch: Callable[[int, int], bytes],
        size: int,
        where: str,
        *,
        first: bytes = b"",
        range_bytes: int = RANGE_BYTES,
        streams: int = READ_STREAMS,
    ) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._where = where
        self._range_bytes = range_bytes
        self._ahead = streams + 1  # one more than the threads: none waits for the reader to ask
        self._pool = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="hms-dr-ranged-read")
        self._pending: deque[Future[bytes]] = deque()
        self._scheduled = len(first)  # the offset the next range starts at
        self._current = memoryview(first)
        self._schedule()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._current:
            if not self._pending:
                return 0
            chunk = self._pending.popleft().result()  # the fetch's own error, raised here in order
            self._schedule()
            self._current = memoryview(chunk)
        n = min(len(view), len(self._current))
        view[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pending.clear()
            self._current = memoryview(b"")
        super().close()

    def _schedule(self) -> None:
        while len(self._pending) < self._ahead and self._scheduled < self._size:
            last = min(self._scheduled + self._range_bytes, self._size) - 1
            self._pending.append(self._pool.submit(self._fetch_exactly, self._scheduled, last))
            self._scheduled = last + 1

    def _fetch_exactly(self, first: int, last: int) -> bytes:
        data = self._fetch(first, last)
        if len(data) != last - first + 1:
            raise StoreUnavailable(
                f"bytes {first}-{last} of {self._where} came back as {len(data)} bytes",
                hint="a later retry may succeed",
            )
        return data
