"""Pipelines of real programs: output only ends cleanly when every stage succeeded."""

from __future__ import annotations

import hashlib
import io
import os
import secrets

import pytest

from hms_dr.errors import ToolFailed
from hms_dr.streams import Pipeline, Stage


def read_all(pipeline: Pipeline) -> bytes:
    chunks = []
    while True:
        chunk = pipeline.output.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_bytes_flow_through_every_stage_and_the_tap_sees_them() -> None:
    data = os.urandom(3 << 20)
    seen = hashlib.sha256()
    stages = [Stage("gzip", ["gzip", "-1", "-c"]), Stage("gunzip", ["gzip", "-d", "-c"])]
    with Pipeline(stages, source=io.BytesIO(data), tap=seen.update, tap_after=0) as pipeline:
        out = read_all(pipeline)
    assert out == data
    assert seen.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_tap_between_stages_sees_the_intermediate_bytes() -> None:
    tapped = bytearray()
    stages = [Stage("printf", ["printf", "hello"]), Stage("tr", ["tr", "a-z", "A-Z"])]
    with Pipeline(stages, tap=tapped.extend, tap_after=1) as pipeline:
        out = read_all(pipeline)
    assert bytes(tapped) == b"hello" and out == b"HELLO"


def test_a_producer_that_dies_makes_the_last_read_fail_not_end() -> None:
    stages = [
        Stage("producer", ["sh", "-c", "printf partial; echo 'pg_dump: error: connection lost' >&2; exit 1"]),
        Stage("cat", ["cat"]),
    ]
    pipeline = Pipeline(stages)
    with pytest.raises(ToolFailed) as caught:
        read_all(pipeline)
    assert caught.value.tool == "producer"
    assert "connection lost" in str(caught.value)


def test_a_killed_producer_is_reported_as_killed() -> None:
    stages = [Stage("producer", ["sh", "-c", "printf x; kill -9 $$"]), Stage("cat", ["cat"])]
    with pytest.raises(ToolFailed, match="producer was killed"):
        read_all(Pipeline(stages))


def test_secret_input_reaches_the_program_through_a_descriptor_not_argv() -> None:
    secret = secrets.token_hex(16)
    stage = Stage("reader", ["cat", "/dev/fd/{secret_fd}"], secret_input=secret)
    pipeline = Pipeline([stage])
    assert read_all(pipeline) == secret.encode()
    assert all(secret not in arg for arg in stage.argv)


def test_leaving_the_block_with_an_error_kills_every_stage() -> None:
    with pytest.raises(RuntimeError), Pipeline([Stage("sleeper", ["sleep", "30"])]) as pipeline:
        raise RuntimeError("upload failed")
    assert all(p.process.poll() is not None for p in pipeline._processes)


def test_reading_again_after_the_end_keeps_returning_nothing() -> None:
    pipeline = Pipeline([Stage("printf", ["printf", "abc"])])
    assert read_all(pipeline) == b"abc"
    assert pipeline.output.read(10) == b""
    assert pipeline.output.read() == b""


def test_pipes_between_stages_are_widened_to_a_mebibyte() -> None:
    import fcntl

    from hms_dr.streams import PIPE_BYTES, widen_pipe

    read_end, write_end = os.pipe()
    try:
        widen_pipe(write_end)
        assert fcntl.fcntl(read_end, 1032) == PIPE_BYTES  # F_GETPIPE_SZ: both ends share the buffer
    finally:
        os.close(read_end)
        os.close(write_end)
    with open(os.devnull, "rb") as not_a_pipe:
        widen_pipe(not_a_pipe.fileno())  # refused by the system (EBADF): quietly, the caller keeps going
