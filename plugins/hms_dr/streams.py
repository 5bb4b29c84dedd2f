"""Pipelines of programs joined by pipes, so dump, hash, compress, encrypt and upload overlap.

A :class:`Pipeline` starts its stages (``pg_dump | zstd | gpg``, ``gpg -d | zstd -d``...), can
put one Python *tap* between two stages (to hash the plain bytes or feed a verifier on the way)
and hands the last stage's output to the caller as a :class:`CheckedReader`. That reader only
reports end-of-stream after every stage has exited 0: a killed ``pg_dump`` makes the final read
raise :class:`ToolFailed` instead of ending a stream that looks complete, so the store never
commits a truncated payload.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, BinaryIO

from hms_dr.errors import ToolFailed

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
STDERR_LINES_KEPT = 50
# Linux pipes hold 64 KiB by default: between zstd, gpg and a Python pump moving a cluster that is
# a context switch every 64 KiB. A wider pipe lets each stage run longer per wake-up.
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux; Python 3.10+ names it, but only on Linux)


def widen_pipe(fd: int) -> None:
    """Ask for a PIPE_BYTES buffer on the pipe ``fd`` belongs to; where the system refuses (another
    OS, /proc/sys/fs/pipe-max-size lower) the pipe keeps its size and only runs slower."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)


@dataclass
class Stage:
    """One program of a pipeline. ``secret_input`` is written to a private pipe passed as fd,
    for gpg's --passphrase-fd; the argv names the fd with the placeholder ``{secret_fd}``."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    secret_input: str | None = field(default=None, repr=False)
    # Exit codes that still mean success (pg_restore --list closing its input early is fine).
    ok_exit_codes: tuple[int, ...] = (0,)


class _StageProcess:
    def __init__(self, stage: Stage, stdin: int | IO[bytes] | None, stdout: int) -> None:
        self.stage = stage
        self.stderr_lines: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        pass_fds: tuple[int, ...] = ()
        argv = list(stage.argv)
        secret_read = secret_write = None
        if stage.secret_input is not None:
            secret_read, secret_write = os.pipe()
            argv = [a.replace("{secret_fd}", str(secret_read)) for a in argv]
            pass_fds = (secret_read,)
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=dict(stage.env) if stage.env is not None else None,
                pass_fds=pass_fds,
            )
        finally:
            if secret_read is not None:
                os.close(secret_read)
        if secret_write is not None:
            with os.fdopen(secret_write, "w") as secret_pipe:
                secret_pipe.write(stage.secret_input or "")
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name=f"{stage.name}-stderr", daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_lines.append(line)
        self.process.stderr.close()

    def wait(self) -> int:
        code = self.process.wait()
        self._stderr_thread.join(timeout=10)
        return code

    def failure(self) -> ToolFailed | None:
        code = self.process.returncode
        if code is None or code in self.stage.ok_exit_codes:
            return None
        for line in self.stderr_lines:
            log.error("%s: %s", self.stage.name, line)
        return ToolFailed(self.stage.name, code, telling_line(self.stderr_lines), stderr_lines=tuple(self.stderr_lines))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


class Pipeline:
    """Programs joined by pipes, optionally fed from a Python stream and tapped once on the way.

    ``tap_after`` is the number of stages before the tap (0 taps the source itself); ``tap`` is
    called with every chunk that passes. Use as a context manager: leaving it with an exception
    kills every stage.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        source: BinaryIO | None = None,
        tap: Callable[[bytes], None] | None = None,
        tap_after: int = 0,
    ) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        if tap is not None and not 0 <= tap_after <= len(stages):
            raise ValueError("tap_after is out of range")
        if tap is None:
            tap_after = 0 if source is not None else -1
            tap = _no_tap
        if source is None and tap_after == 0:
            raise ValueError("tapping the source needs a source")
        self._processes: list[_StageProcess] = []
        self._threads: list[threading.Thread] = []
        self._thread_errors: list[BaseException] = []
        self._closed = False
        try:
            self._start(stages, source, tap, tap_after)
        except BaseException:
            self.abort()
            raise
        self.output = CheckedReader(self._output_file, self)

    def _start(
        self, stages: Sequence[Stage], source: BinaryIO | None, tap: Callable[[bytes], None], tap_after: int
    ) -> None:
        upstream: int | IO[bytes] | None = subprocess.DEVNULL if source is None else None
        pump_input: IO[bytes] | None = source
        for index, stage in enumerate(stages):
            if index == tap_after:
                # A Python pump between the previous stage (or the source) and this stage.
                read_end, write_end = os.pipe()
                widen_pipe(write_end)
                assert pump_input is not None
                self._pump(pump_input, write_end, tap)
                upstream = read_end
            proc = _StageProcess(stage, upstream, subprocess.PIPE)
            assert proc.process.stdout is not None
            widen_pipe(proc.process.stdout.fileno())
            # Drop the parent's copy of the stage's input, so an upstream program gets SIGPIPE
            # when this one dies instead of blocking forever on a pipe nobody reads.
            if isinstance(upstream, int) and upstream >= 0:
                os.close(upstream)
            elif upstream is not None and hasattr(upstream, "close"):
                upstream.close()
            self._processes.append(proc)
            upstream = proc.process.stdout
            pump_input = proc.process.stdout
        if tap_after == len(stages):
            read_end, write_end = os.pipe()
            widen_pipe(write_end)
            assert pump_input is not None
            self._pump(pump_input, write_end, tap)
            self._output_file: IO[bytes] = os.fdopen(read_end, "rb")
        else:
            last = self._processes[-1].process.stdout
            assert last is not None
            self._output_file = last

    def _pump(self, src: IO[bytes], write_fd: int, tap: Callable[[bytes], None]) -> None:
        def run() -> None:
            try:
                with os.fdopen(write_fd, "wb") as sink:
                    while True:
                        chunk = src.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        tap(chunk)
                        sink.write(chunk)
            except BaseException as exc:  # reported by close(); a broken pipe downstream is the downstream's error
                if not isinstance(exc, BrokenPipeError):
                    self._thread_errors.append(exc)
                self.abort()

        thread = threading.Thread(target=run, name="pipeline-pump", daemon=True)
        thread.start()
        self._threads.append(thread)

    def finish(self) -> None:
        """Wait for every stage; raise the most upstream failure. Called by the reader at EOF."""
        if self._closed:
            return
        self._closed = True
        for thread in self._threads:
            thread.join()
        for proc in self._processes:
            proc.wait()
        if self._thread_errors:
            raise self._thread_errors[0]
        for proc in self._processes:
            failure = proc.failure()
            if failure is not None:
                raise failure

    def abort(self) -> None:
        for proc in self._processes:
            proc.kill()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
            for proc in self._processes:
                proc.wait()
            self._closed = True
            return
        self.finish()


class CheckedReader:
    """The pipeline's output; EOF is only reported once every stage exited successfully."""

    def __init__(self, raw: IO[bytes], pipeline: Pipeline) -> None:
        self._raw = raw
        self._pipeline = pipeline
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        # Readers (the S3 multipart loop among them) may ask again after the end: keep answering
        # b"" once the pipeline has been checked, like any file at EOF.
        if self._ended:
            return b""
        chunk = self._raw.read(size)
        if not chunk and size != 0:
            self._raw.close()
            self._pipeline.finish()
            self._ended = True
        return chunk

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


class FedProgram:
    """A program fed chunk by chunk beside a stream (a verifier's tap), its output collected.

    A program that stops reading early (pg_restore --list once it has the table of contents)
    just stops being fed; whether that was fine is for its exit code to say.
    """

    def __init__(self, argv: Sequence[str], name: str, *, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
        self.stdout = b""
        self.stderr = b""
        self._accepting = True
        self._reader = threading.Thread(target=self._collect, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = self.process.stdout.read()
        self.stderr = self.process.stderr.read()

    def feed(self, chunk: bytes) -> None:
        if not self._accepting:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(chunk)
        except BrokenPipeError:
            self._accepting = False

    def finish(self) -> int:
        """Close its input, wait for it and its output; its exit code."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        code = self.process.wait()
        self._reader.join()
        return code

    def last_error_line(self) -> str:
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit {self.process.returncode}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def telling_line(lines: Sequence[str]) -> str:
    """The line of a tool's stderr that says what went wrong: the last error line, not a hint."""
    for line in reversed(lines):
        lowered = line.lower()
        if "error" in lowered or "fatal" in lowered or "failed" in lowered:
            return line
    return lines[-1] if lines else ""


def _no_tap(chunk: bytes) -> None:
    return None
