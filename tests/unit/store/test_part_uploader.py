"""The S3 store's part uploader: two parts sent at once, the parts listed in order whatever order
they finish in, the first failure reported, and nothing sent after a cancel."""

from __future__ import annotations

import threading
import time

import pytest

from hms_dr.store.s3 import PART_UPLOAD_THREADS, _PartUploader


def test_parts_are_sent_at_once_and_listed_in_order() -> None:
    sending: set[int] = set()
    most_at_once = [0]
    lock = threading.Lock()

    def upload(number: int, data: bytes) -> str:
        with lock:
            sending.add(number)
            most_at_once[0] = max(most_at_once[0], len(sending))
        time.sleep(0.05 if number % 2 else 0.01)  # odd parts finish after the next even one
        with lock:
            sending.discard(number)
        return f"etag-{number}-{len(data)}"

    uploader = _PartUploader(upload)
    for number in range(1, 9):
        uploader.submit(number, b"x" * number)
    parts = uploader.finish()

    assert parts == [{"PartNumber": n, "ETag": f"etag-{n}-{n}"} for n in range(1, 9)]
    assert most_at_once[0] == PART_UPLOAD_THREADS == 2


def test_the_first_failure_is_raised_and_no_part_is_sent_after_a_cancel() -> None:
    sent: list[int] = []

    def upload(number: int, data: bytes) -> str:
        if number == 2:
            raise OSError("connection reset by the store")
        time.sleep(0.02)
        sent.append(number)
        return "etag"

    uploader = _PartUploader(upload)
    with pytest.raises(OSError, match="connection reset"):
        for number in range(1, 50):
            uploader.submit(number, b"part")
        uploader.finish()
    uploader.cancel()
    after_cancel = len(sent)
    time.sleep(0.1)

    assert len(sent) == after_cancel < 48  # the parts queued behind the failure were dropped
    assert 2 not in sent
