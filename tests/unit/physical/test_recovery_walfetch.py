"""walfetch, the restore_command: its exit status is the contract with PostgreSQL (0 fetched,
1 the end of the archive, 255 abort recovery), and %p only ever appears complete. Run as
PostgreSQL runs it (a separate Python, -I) against a stand-in WAL source on a real socket."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hms_dr.physical import walfetch

SEGMENT = bytes(range(256)) * 4096  # 1 MiB


class StandInSource:
    """Answers every request with the next scripted answer (header dict, then raw bytes)."""

    def __init__(self, directory: Path, answers: list[tuple[dict[str, object], bytes]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, str]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(directory / walfetch.SOCKET_NAME))
        self.listener.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for header, body in self.answers:
            conn, _ = self.listener.accept()
            with conn:
                self.requests.append(json.loads(conn.makefile("rb").readline()))
                conn.sendall(json.dumps(header).encode() + b"\n" + body)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[object]:
    sources: list[StandInSource] = []

    def fetch(
        *answers: tuple[dict[str, object], bytes], args: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        sources.append(StandInSource(tmp_path, list(answers)))
        argv = args if args is not None else [str(tmp_path), "000000010000000000000003", str(tmp_path / "RECOVERYXLOG")]
        return subprocess.run(
            [sys.executable, "-I", walfetch.__file__, *argv], capture_output=True, text=True, timeout=60
        )

    yield fetch
    for source in sources:
        source.close()


def ok(body: bytes, sha256: str | None = None, size: int | None = None) -> tuple[dict[str, object], bytes]:
    header = {
        "status": "ok",
        "size": len(body) if size is None else size,
        "sha256": sha256 or hashlib.sha256(body).hexdigest(),
    }
    return header, body


def test_a_fetched_file_lands_complete_at_p_and_exits_0(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = run(ok(SEGMENT))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == SEGMENT
    assert not list(tmp_path.glob("*.walfetch-partial"))


def test_a_file_not_in_the_store_exits_1_the_normal_end_of_the_archive(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = run(({"status": "missing"}, b""))
    assert done.returncode == 1 and done.stderr == ""
    assert not (tmp_path / "RECOVERYXLOG").exists()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            ({"status": "error", "message": "000000010000000000000003: sha256 does not match"}, b""),
            "sha256 does not match",
        ),
        (ok(SEGMENT, sha256="0" * 64), "do not match the sha256 the WAL source announced"),
        (ok(SEGMENT[:1000], size=len(SEGMENT)), "stopped after 1000 of"),
        (({"status": "what"}, b""), "answered 'what'"),
        ((["not", "a", "dict"], b""), "malformed answer"),  # type: ignore[list-item]
    ],
)
def test_every_other_failure_exits_255_so_postgresql_aborts_recovery(run, tmp_path: Path, answer, said: str) -> None:  # type: ignore[no-untyped-def]
    done = run(answer)
    assert done.returncode == 255 and said in done.stderr and done.stderr.startswith("hms-dr walfetch:")
    assert not (tmp_path / "RECOVERYXLOG").exists() and not list(tmp_path.glob("*.walfetch-partial"))


def test_no_source_and_bad_arguments_abort_too(tmp_path: Path) -> None:
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", walfetch.__file__, *args], capture_output=True, text=True, timeout=60
        )

    assert call(str(tmp_path), "000000010000000000000003", str(tmp_path / "x")).returncode == 255
    assert call(str(tmp_path)).returncode == 255
    assert call(str(tmp_path), "--ping").returncode == 255


def test_ping_asks_the_source_and_writes_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = run(({"status": "pong"}, b""), args=[str(tmp_path), "--ping"])
    assert done.returncode == 0, done.stderr


def test_walfetch_needs_only_the_standard_library() -> None:
    import ast

    tree = ast.parse(Path(walfetch.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
