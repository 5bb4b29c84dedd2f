"""walfetch: the ``restore_command`` of a point-in-time recovery, asking the recovery's WAL source
for one archived file and writing it where PostgreSQL wants it.

    restore_command = '<python> -I <this file> <private dir> %f %p'
    python -m hms_dr.physical.walfetch <private dir> %f %p      (the same, through the package)
    python -m hms_dr.physical.walfetch <private dir> --ping     (is the WAL source answering?)

The WAL source (``hms_dr.physical.walsource``) runs inside the recovering process and listens on
a Unix socket in ``<private dir>``; it fetches the file's set from the store, proves the stored
bytes against the manifest's sha256 BEFORE decrypting, decrypts and decompresses, and streams
the plain bytes here with their size and sha256. This program writes them to a temp file beside
``%p``, checks size and sha256 again, and renames it onto ``%p``: PostgreSQL never sees a partial
file. (No fsync: a crash restarts recovery, which fetches the file again.) It uses the standard library only, so any Python 3 the server's OS user can run
will do, and it holds no secret: store credentials and the decryption key never leave the
recovering process (see walsource for why).

The exit status is the contract with PostgreSQL 15 (xlogarchive.c, RestoreArchivedFile):

* 0 -- the file is at ``%p``;
* 1 -- the store has no such file: the normal end of the archive (PostgreSQL also asks for
  files that cannot exist, such as the next timeline's history), and recovery ends there;
* 255 -- anything else (checksum mismatch, decryption failure, store unreachable, source gone,
  bad arguments, a bug). PostgreSQL treats an exit status above 125, like death by a signal, as
  an error of the command itself and ABORTS recovery with FATAL, instead of taking the failure
  for the end of the archive and promoting early with committed work silently missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
from typing import BinaryIO

SOCKET_NAME = "walfetch.sock"
EXIT_FETCHED = 0
EXIT_NOT_IN_STORE = 1
EXIT_ABORT_RECOVERY = 255
READ_TIMEOUT_S = 1800.0  # one file from a slow store; the source answers "error" well before on failure
HEADER_MAX_BYTES = 64 * 1024
CHUNK_BYTES = 1 << 20


class FetchFailed(Exception):
    """Anything that must abort recovery rather than end it."""


def _say(message: str) -> None:
    # stderr of restore_command lands in the server log, next to PostgreSQL's own FATAL line.
    sys.stderr.write(f"hms-dr walfetch: {message}\n")
    sys.stderr.flush()


def _connect(directory: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(READ_TIMEOUT_S)
    try:
        sock.connect(os.path.join(directory, SOCKET_NAME))
    except OSError as exc:
        sock.close()
        raise FetchFailed(f"the recovery's WAL source at {directory} does not answer ({exc.strerror or exc})") from None
    return sock


def _request(sock: socket.socket, request: dict[str, str]) -> tuple[dict[str, object], BinaryIO]:
    sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
    stream = sock.makefile("rb")
    line = stream.readline(HEADER_MAX_BYTES)
    if not line.endswith(b"\n"):
        raise FetchFailed("the WAL source closed the connection without an answer")
    answer = json.loads(line.decode("utf-8"))
    if not isinstance(answer, dict):
        raise FetchFailed("the WAL source gave a malformed answer")
    return answer, stream


def ping(directory: str) -> None:
    with _connect(directory) as sock:
        answer, _ = _request(sock, {"op": "ping"})
    if answer.get("status") != "pong":
        raise FetchFailed(f"the WAL source answered {answer.get('status')!r} to a ping")


def fetch(directory: str, name: str, destination: str) -> int:
    """Ask for ``name``; write it to ``destination`` atomically. Returns the exit status."""
    with _connect(directory) as sock:
        answer, stream = _request(sock, {"op": "fetch", "file": name})
        status = answer.get("status")
        if status == "missing":
            return EXIT_NOT_IN_STORE
        if status != "ok":
            raise FetchFailed(str(answer.get("message") or f"the WAL source answered {status!r}"))
        size = int(str(answer["size"]))
        expected_sha256 = str(answer["sha256"])
        _write_atomically(stream, destination, size, expected_sha256, name)
    return EXIT_FETCHED


def _write_atomically(stream: BinaryIO, destination: str, size: int, expected_sha256: str, name: str) -> None:
    partial = f"{destination}.walfetch-partial"
    if os.path.lexists(partial):
        os.unlink(partial)  # left by an attempt that was killed
    digest = hashlib.sha256()
    received = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while received < size:
                chunk = stream.read(min(CHUNK_BYTES, size - received))
                if not chunk:
                    raise FetchFailed(f"{name}: the WAL source stopped after {received} of {size} bytes")
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
        if digest.hexdigest() != expected_sha256:
            raise FetchFailed(f"{name}: the bytes received do not match the sha256 the WAL source announced")
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 2 and args[1] == "--ping":
            ping(args[0])
            return EXIT_FETCHED
        if len(args) != 3:
            _say("usage: walfetch <private dir> %f %p  |  walfetch <private dir> --ping")
            return EXIT_ABORT_RECOVERY
        return fetch(args[0], args[1], args[2])
    except FetchFailed as exc:
        _say(str(exc))
    except BaseException as exc:
        subject = args[1] if len(args) == 3 else "ping"
        _say(f"{subject}: {type(exc).__name__}: {exc}")
    return EXIT_ABORT_RECOVERY


if __name__ == "__main__":
    sys.exit(main())
