"""Progress lines for long steps (a physical backup's copy, extract and upload; a directory dump).

A base backup of a 1 GB+ cluster runs for minutes per step; a line every few seconds with the
bytes done, the share of the expected total and the rate tells the on-call DBA it is moving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from hms_dr.units import human_bytes, human_rate

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0


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
        share = eta = ""
        if self.expected_bytes:
            share = f" of ~{human_bytes(self.expected_bytes)} ({100 * done / self.expected_bytes:.0f}%)"
            # At the pace so far; the expected total is an estimate (a database's size on disk,
            # not its dump's), so past it the ETA says so rather than counting below zero.
            if 0 < done < self.expected_bytes:
                eta = f", ETA ~{elapsed * (self.expected_bytes - done) / done:.0f} s"
            elif done >= self.expected_bytes:
                eta = ", past the estimate"
        return f"{self.step}: {human_bytes(done)}{share} after {elapsed:.0f} s, {human_rate(done, elapsed)}{eta}"

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                log.info("%s", self.line())
            except OSError:  # a file measured went away between listing and stat: try again next time
                continue
