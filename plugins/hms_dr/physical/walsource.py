"""The WAL source: serves archived WAL from the store to a recovering server's restore_command.

It runs inside the process that drives the recovery and listens on a Unix socket in a private
directory (0700, owned by the server's OS user, removed afterwards). For each file ``walfetch``
asks for, it reads the WAL set's manifest, downloads the stored object and proves its size and
sha256 against the manifest BEFORE decrypting, decrypts and decompresses it, checks the plain
bytes against the sha256 recorded at archiving, and streams them to walfetch.

Why a socket rather than handing walfetch the credentials (in a file or in the server's
environment): the store client and the restore key then never leave this process. The server's
OS user gets nothing it could leak -- no S3 keys in a file it can read, no private key in a gpg
home it owns, nothing in the environment of every backend (where ``pg_read_file('/proc/self/
environ')`` could show it). It also works for any store the tasks layer can open (role-assumed
or temporary S3 credentials included), imports boto3 and imports the key once instead of once
per 16 MiB segment, and makes a recovery whose driver dies fail safe: walfetch cannot reach the
source, exits 255, and PostgreSQL aborts instead of promoting. Only the server's OS user (and
root) can enter the directory, and connections from any other uid are refused (SO_PEERCRED).

"Not in the store" is answered ``missing`` (walfetch exits 1, the normal end of the archive),
except for a file the recovery plan counts on: that is a gap, answered ``error`` (exit 255).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from hms_dr.catalog import key_for
from hms_dr.crypto import DecryptionKey, ImportedKey, prepare_decryption
from hms_dr.decrypt import decrypt_to_file, download_verified, plain_matches
from hms_dr.errors import ChecksumMismatch, HmsDrError, ManifestInvalid, ObjectMissing
from hms_dr.gpghome import gpg_home
from hms_dr.manifest import MANIFEST_NAME, BackupKind, parse_manifest
from hms_dr.physical.walfetch import HEADER_MAX_BYTES, SOCKET_NAME
from hms_dr.units import human_bytes
from hms_dr.wal.names import parse_wal_name

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
ACCEPT_POLL_S = 0.5
DEFAULT_PREFETCH = 2
# sun_path holds 108 bytes; a deep staging directory falls back to the temp directory.
MAX_SOCKET_DIR_CHARS = 80


@dataclass(frozen=True)
class WalFile:
    """One WAL file fetched, proven and decrypted into a local file."""

    name: str
    path: Path
    plain_size_bytes: int
    plain_sha256: str
    stored_size_bytes: int


@dataclass
class WalSourceStats:
    served: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "<file>: <one line>", in order
    fetched_ahead: int = 0  # of served: already fetched when PostgreSQL asked
    stored_bytes: int = 0
    plain_bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_served": len(self.served),
            "files_fetched_ahead": self.fetched_ahead,
            "first_served": self.served[0] if self.served else None,
            "last_served": self.served[-1] if self.served else None,
            "not_in_store": list(self.missing),
            "failures": list(self.failures),
            "stored_bytes": self.stored_bytes,
            "plain_bytes": self.plain_bytes,
            "fetch_seconds": round(self.seconds, 3),
        }


class WalSource:
    """Fetches WAL sets of ``cluster`` from ``store``; serves them on a socket once started.

    Use as a context manager: the private directory, the socket, the gpg home holding the
    restore key and every temp file are removed when the block ends.
    """

    def __init__(
        self,
        store: Store,
        cluster: str,
        key: DecryptionKey,
        *,
        staging_dir: Path,
        server_uid: int | None = None,
        socket_parent: Path | None = None,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> None:
        """:param prefetch: how many of the files the plan expects next are fetched and decrypted
        ahead, while PostgreSQL replays the current one (0: none)."""
        self.store = store
        self.cluster = cluster
        self.key = key
        self.staging_dir = staging_dir
        self.server_uid = server_uid
        self.socket_parent = socket_parent
        self.expected: frozenset[str] = frozenset()
        self._order: dict[str, int] = {}
        self._sequence: tuple[str, ...] = ()
        self.prefetch = prefetch
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[str, Future[WalFile | None]] = {}
        self.gap_hint = ""
        self.stats = WalSourceStats()
        self._stack = ExitStack()
        self._imported: ImportedKey | None = None
        self._work: Path | None = None
        self._directory: Path | None = None
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> WalSource:
        try:
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            self._work = Path(tempfile.mkdtemp(prefix="walsource-", dir=self.staging_dir))  # 0700, ours only
            self._stack.callback(shutil.rmtree, self._work, True)
            home = self._stack.enter_context(gpg_home(self.staging_dir))
            # Unlocked once here, before the prefetch threads decrypt in this home concurrently.
            self._imported = prepare_decryption(home, self.key)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._stack.close()

    @property
    def directory(self) -> Path:
        """The private directory walfetch is given (it holds the socket)."""
        if self._directory is None:
            raise RuntimeError("the WAL source is not serving yet")
        return self._directory

    def expect(self, names: Sequence[str], *, gap_hint: str = "") -> None:
        """Files the recovery plan counts on, in replay order: their absence is an error, not the
        end of the archive, and the next few are fetched ahead of PostgreSQL's requests."""
        self.expected = frozenset(names)
        self._sequence = tuple(names)
        self._order = {name: index for index, name in enumerate(self._sequence)}
        self.gap_hint = gap_hint

    def serve(self) -> Path:
        """Open the socket in a fresh private directory and answer walfetch from a thread."""
        parent = self.socket_parent or Path(tempfile.gettempdir())
        if len(str(parent.absolute())) > MAX_SOCKET_DIR_CHARS:
            parent = Path(tempfile.gettempdir())
        directory = Path(tempfile.mkdtemp(prefix="hms-walfetch-", dir=parent))
        self._stack.callback(shutil.rmtree, directory, True)
        os.chmod(directory, 0o700)
        path = directory / SOCKET_NAME
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, 0o600)
        if self.server_uid is not None and self.server_uid != os.geteuid():
            os.chown(directory, self.server_uid, -1)
            os.chown(path, self.server_uid, -1)
        listener.listen(4)
        listener.settimeout(ACCEPT_POLL_S)
        self._listener, self._directory = listener, directory
        self._thread = threading.Thread(target=self._accept_loop, name="wal-source", daemon=True)
        self._thread.start()
        log.info("WAL source serving restore_command from %s", directory)
        return directory

    # -- fetching --------------------------------------------------------------------------

    def fetch(self, name: str, destination: Path) -> WalFile | None:
        """Fetch ``name`` into ``destination``; None when the store has no such WAL set."""
        assert self._imported is not None and self._work is not None, "use the WAL source as a context manager"
        manifest_key = key_for(self.cluster, BackupKind.WAL, name, MANIFEST_NAME)
        try:
            raw = self.store.get_bytes(manifest_key)
        except ObjectMissing:
            return None
        where = self.store.describe(manifest_key)
        manifest = parse_manifest(raw, where=where)
        if manifest.kind is not BackupKind.WAL or manifest.backup_set_id != name or len(manifest.payloads) != 1:
            raise ManifestInvalid(f"manifest {where} does not describe the single WAL file {name}")
        payload = manifest.payloads[0]
        object_key = key_for(self.cluster, BackupKind.WAL, name, payload.name)
        encrypted = self._work / f"{name}.{secrets.token_hex(4)}.stored"
        started = time.monotonic()
        try:
            download_verified(self.store, object_key, payload, encrypted)  # sha256 proven before decrypting
            # The destination may be left from an earlier try of the same name: replaced, still 0600.
            plain = decrypt_to_file(encrypted, payload.name, self._imported, destination, replace=True)
        finally:
            encrypted.unlink(missing_ok=True)
        if not plain_matches(payload, plain):
            destination.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"WAL file {name} decrypted to {plain.size_bytes} bytes that differ from the file archived"
            )
        with self._lock:
            self.stats.stored_bytes += payload.size_bytes
            self.stats.plain_bytes += plain.size_bytes
            self.stats.seconds += time.monotonic() - started
        return WalFile(name, destination, plain.size_bytes, plain.sha256, payload.size_bytes)

    # -- serving ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with conn:
                try:
                    self._handle(conn)
                except Exception:  # a broken connection must not stop the source
                    log.exception("WAL source: a walfetch connection failed")

    def _peer_allowed(self, conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid in {os.geteuid(), self.server_uid}

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(600)
        if not self._peer_allowed(conn):
            log.warning("WAL source: refused a connection from a process of another OS user")
            return
        stream = conn.makefile("rb")
        line = stream.readline(HEADER_MAX_BYTES)
        try:
            request = json.loads(line.decode("utf-8"))
            op, name = request.get("op"), str(request.get("file", ""))
        except (ValueError, AttributeError):
            self._answer(conn, {"status": "error", "message": "malformed request"})
            return
        if op == "ping":
            self._answer(conn, {"status": "pong"})
            return
        if op != "fetch" or parse_wal_name(name) is None:
            self._answer(conn, {"status": "error", "message": f"not a WAL file name: {name[:40]!r}"})
            return
        self._serve_file(conn, name)

    def _fetch_ahead(self, after: str) -> None:
        """Start fetching the files the plan expects after ``after`` (up to ``prefetch`` of them)."""
        index = self._order.get(after)
        if index is None or self.prefetch <= 0:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.prefetch, thread_name_prefix="wal-prefetch")
        for name in self._sequence[index + 1 : index + 1 + self.prefetch]:
            if name not in self._ahead:
                self._ahead[name] = self._pool.submit(self._fetch_to_work, name)

    def _fetch_to_work(self, name: str) -> WalFile | None:
        assert self._work is not None
        return self.fetch(name, self._work / f"{name}.{secrets.token_hex(4)}.plain")

    def _serve_file(self, conn: socket.socket, name: str) -> None:
        ahead = self._ahead.pop(name, None)
        self._fetch_ahead(name)
        fetched: WalFile | None = None
        try:
            try:
                # A file fetched ahead fails (or is missing) exactly as a direct fetch would.
                fetched = ahead.result() if ahead is not None else self._fetch_to_work(name)
            except HmsDrError as exc:
                self._fail(conn, name, exc.message)
                return
            except Exception as exc:
                log.exception("WAL source: fetching %s failed", name)
                self._fail(conn, name, f"{type(exc).__name__}: {exc}")
                return
            if fetched is None:
                if name in self.expected:
                    self._fail(
                        conn, name, f"WAL file {name} is missing from the store, but recovery needs it{self.gap_hint}"
                    )
                    return
                with self._lock:
                    self.stats.missing.append(name)
                log.info("WAL source: %s is not in the store (the end of the archive, for PostgreSQL)", name)
                self._answer(conn, {"status": "missing"})
                return
            self._answer(conn, {"status": "ok", "size": fetched.plain_size_bytes, "sha256": fetched.plain_sha256})
            with fetched.path.open("rb") as source:
                _send_file(conn, source)
            with self._lock:
                self.stats.served.append(name)
                self.stats.fetched_ahead += ahead is not None
            log.info(
                "WAL source: served %s (%s, %s stored%s)",
                name,
                human_bytes(fetched.plain_size_bytes),
                human_bytes(fetched.stored_size_bytes),
                ", fetched ahead" if ahead is not None else "",
            )
        finally:
            if fetched is not None:
                fetched.path.unlink(missing_ok=True)

    def _fail(self, conn: socket.socket, name: str, message: str) -> None:
        with self._lock:
            self.stats.failures.append(f"{name}: {message}")
        log.error("WAL source: %s: %s (recovery will abort)", name, message)
        self._answer(conn, {"status": "error", "message": message})

    @staticmethod
    def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer).encode("utf-8") + b"\n")


def _send_file(conn: socket.socket, source: BinaryIO) -> None:
    while chunk := source.read(CHUNK_BYTES):
        conn.sendall(chunk)
