"""RangedReader: an object's bytes in order whatever order its ranges arrive in, a bounded number of
ranges fetched ahead, a failed range raised where the reader reaches it, and no fetch left running
after close. The source is a bytes object served range by range with delays, the way S3's ranged
GETs finish out of order."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from hms_dr.errors import StoreUnavailable
from hms_dr.store.ranged import RangedReader

RANGE = 1000
STREAMS = 3


class Source:
    """Serves ranges of ``data``, odd ranges slower than even ones; counts what is in flight."""

    def __init__(self, data: bytes, fail_at: int | None = None, short_at: int | None = None) -> None:
        self.data = data
        self.fail_at = fail_at
        self.short_at = short_at
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.fetched: list[int] = []
        self.fetching_after_close = False
        self.closed = threading.Event()

    def fetch(self, first: int, last: int) -> bytes:
        if self.closed.is_set():
            self.fetching_after_close = True
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.004 if (first // RANGE) % 2 else 0.001)
            if first == self.fail_at:
                raise StoreUnavailable(f"range at {first} refused")
            with self.lock:
                self.fetched.append(first)
            end = last if first != self.short_at else last - 10
            return self.data[first : end + 1]
        finally:
            with self.lock:
                self.in_flight -= 1


def reader(source: Source, **kwargs: object) -> RangedReader:
    return RangedReader(source.fetch, len(source.data), "s3://bucket/key", range_bytes=RANGE, streams=STREAMS, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, RANGE, RANGE + 1, 37 * RANGE + 123])
def test_the_bytes_come_back_in_order_with_a_bounded_number_of_ranges_at_once(size: int) -> None:
    source = Source(os.urandom(size))
    with reader(source) as opened:
        chunks = []
        while chunk := opened.read(333):
            chunks.append(chunk)
    assert b"".join(chunks) == source.data
    assert sorted(source.fetched) == list(range(0, size, RANGE))  # each range fetched once
    assert source.most_in_flight <= STREAMS


def test_bytes_already_fetched_are_served_first_and_not_fetched_again() -> None:
    data = os.urandom(10 * RANGE)
    source = Source(data)
    with reader(source, first=data[:RANGE]) as opened:
        assert hashlib.sha256(opened.read()).digest() == hashlib.sha256(data).digest()
    assert 0 not in source.fetched and len(source.fetched) == 9


def test_a_failed_range_is_raised_where_the_reader_reaches_it_after_the_bytes_before_it() -> None:
    source = Source(os.urandom(20 * RANGE), fail_at=12 * RANGE)
    got = bytearray()
    with reader(source) as opened, pytest.raises(StoreUnavailable, match="range at 12000 refused"):
        while chunk := opened.read(RANGE // 2):
            got += chunk
    assert bytes(got) == source.data[: 12 * RANGE]


def test_a_short_range_is_an_error_naming_the_object_not_a_short_read() -> None:
    source = Source(os.urandom(5 * RANGE), short_at=3 * RANGE)
    with reader(source) as opened, pytest.raises(StoreUnavailable, match=r"bytes 3000-3999 of s3://bucket/key"):
        opened.read()


def test_close_cancels_the_ranges_not_started_and_waits_for_the_ones_in_flight() -> None:
    source = Source(os.urandom(200 * RANGE))
    opened = reader(source)
    opened.read(10)
    opened.close()
    source.closed.set()
    fetched = len(source.fetched)
    time.sleep(0.05)
    assert source.in_flight == 0 and len(source.fetched) == fetched and not source.fetching_after_close
    assert fetched <= 1 + 2 * (STREAMS + 1)  # what was ahead of the reader, not the whole object
    assert not [t for t in threading.enumerate() if t.name.startswith("hms-dr-ranged-read")]
