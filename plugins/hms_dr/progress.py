"""Progress lines for long work: a base backup's copy and upload, a restore's download, an offsite copy.

On a hospital-sized database these steps run for minutes to hours; a line every 15 seconds with
the bytes done, the share of the expected total (from the database or the manifest), the rate and
an ETA tells the on-call DBA it is moving and when it will be done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from hms_dr.units import human_bytes, human_duration, human_rate

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0


class ByteCounter:
    """Bytes done, added from the thread doing the work and read by ProgressLog's (an int's
    update is atomic under the GIL, and a progress line may lag a chunk)."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, size: int) -> None:
        self.value += size


class ProgressLog:
    """Logs ``step``'s progress every ``every_s`` seconds while the ``with`` block runs.

    ``done_bytes`` is polled from a background thread, so it must be cheap and thread-safe
    (a counter, or the size of a few files).
    """

    def __init__(
        self,
        step: str,
        done_bytes: Callable[[], int],
        *,
        expected_bytes: int | None = None,
        every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self.step = step
        self.done_bytes = done_bytes
        self.expected_bytes = expected_bytes
        self.every_s = every_s
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{step}", daemon=True)

    def __enter__(self) -> ProgressLog:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        done = self.done_bytes()
        share = (
            f" of ~{human_bytes(self.expected_bytes)} ({100 * done / self.expected_bytes:.0f}%)"
            if self.expected_bytes
            else ""
        )
        return f"{self.step}: {human_bytes(done)}{share} after {elapsed:.0f} s, {human_rate(done, elapsed)}{self._eta(done, elapsed)}"

    def _eta(self, done: int, elapsed: float) -> str:
        """At the rate so far; the expected total is an estimate (the database's size), so a step
        that passes it says so rather than counting down below zero."""
        if not self.expected_bytes or done <= 0 or elapsed <= 0:
            return ""
        remaining = self.expected_bytes - done
        if remaining <= 0:
            return ", past the estimate, finishing"
        return f", ETA {human_duration(remaining * elapsed / done)}"

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                log.info("%s", self.line())
            except OSError:  # a file measured went away between listing and stat: try again next time
                continue
