"""Restoring a logical backup set: its payload fetched (proven, then decrypted) into a private
file, and ``pg_restore -j`` of that file into a scratch database (``hms_dr.scratch.database``).

The set's payload is downloaded and its sha256 proven against the manifest BEFORE anything is
decrypted (``hms_dr.decrypt``); the plain bytes are checked against the dump the backup verified.
A directory-format set (the manifest's ``archive_format``) is rebuilt file by file into a private
directory the same way, every payload proven before it is decrypted, and pg_restore reads that
directory: every caller (the restore test, the DR restore) restores both formats through here.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import BackupSet, key_for
from hms_dr.crypto import DecryptionKey, ImportedKey, prepare_decryption
from hms_dr.database import client_tools, connect
from hms_dr.decrypt import decrypt_to_file, download_verified, plain_matches
from hms_dr.errors import ChecksumMismatch, ManifestInvalid, ToolFailed
from hms_dr.gpghome import gpg_home
from hms_dr.manifest import DIRECTORY_ARCHIVE, Payload, archive_format, directory_member
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo, tool_env
from hms_dr.progress import ProgressLog
from hms_dr.units import human_bytes

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

# A line of pg_restore --verbose's progress ("pg_restore: creating TABLE ...", "finished item
# ..."): its errors, warnings and details say "error:", "warning:", "detail:" or "hint:".
_VERBOSE_PROGRESS = re.compile(r"^pg_restore: (?!error:|warning:|detail:|hint:)")


@dataclass(frozen=True)
class FetchedPayload:
    """A payload proven against its manifest and decrypted into a private local file (or, for a
    directory-format set, every payload into a private directory: ``path`` is that directory)."""

    path: Path
    stored_size_bytes: int
    plain_size_bytes: int
    download_seconds: float
    decrypt_seconds: float


def fetch_for_restore(
    store: Store, backup_set: BackupSet, key: DecryptionKey, workdir: Path, *, jobs: int = 2
) -> FetchedPayload:
    """Download, prove, then decrypt the set's dump into ``workdir``: its single payload, or every
    file of a directory-format dump (``jobs`` at a time) into a directory pg_restore reads."""
    if archive_format(backup_set.manifest) == DIRECTORY_ARCHIVE:
        return _fetch_directory(store, backup_set, key, workdir, jobs=jobs)
    payload = backup_set.manifest.payloads[0]
    object_key = key_for(backup_set.manifest.cluster, backup_set.kind, backup_set.backup_set_id, payload.name)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    encrypted = workdir / payload.name
    plain = workdir / (payload.name.split(".", 1)[0] + ".plain")
    with gpg_home(workdir) as home:
        # The key first: a wrong key or passphrase is said before a byte is downloaded.
        started = time.monotonic()
        imported = prepare_decryption(home, key)
        key_s = time.monotonic() - started
        download_s = download_verified(store, object_key, payload, encrypted)
        started = time.monotonic()
        try:
            digest = decrypt_to_file(encrypted, payload.name, imported, plain, expected_bytes=payload.plain_size_bytes)
        finally:
            encrypted.unlink(missing_ok=True)
        decrypt_s = key_s + time.monotonic() - started
    if not plain_matches(payload, digest):
        plain.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{payload.name} decrypted to bytes that differ from the dump the backup verified")
    log.info("decrypted %s: %s plain in %.1f s", payload.name, human_bytes(digest.size_bytes), decrypt_s)
    return FetchedPayload(plain, payload.size_bytes, digest.size_bytes, download_s, decrypt_s)


def _fetch_directory(
    store: Store, backup_set: BackupSet, key: DecryptionKey, workdir: Path, *, jobs: int
) -> FetchedPayload:
    manifest = backup_set.manifest
    members = {directory_member(p.name): p for p in manifest.payloads}
    if len(members) != len(manifest.payloads) or "toc.dat" not in members:
        raise ManifestInvalid(
            f"backup set {backup_set.kind.value}/{backup_set.backup_set_id} is a directory dump without"
            " a toc.dat or with a file listed twice"
        )
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = workdir / "dump.dir"
    directory.mkdir(mode=0o700)
    totals = {"download": 0.0, "decrypt": 0.0, "plain": 0}
    lock = threading.Lock()

    def fetch(member: str, payload: Payload, imported: ImportedKey) -> None:
        encrypted = workdir / payload.name
        object_key = key_for(manifest.cluster, backup_set.kind, backup_set.backup_set_id, payload.name)
        download_s = download_verified(store, object_key, payload, encrypted)
        started = time.monotonic()
        try:
            digest = decrypt_to_file(
                encrypted, payload.name, imported, directory / member, expected_bytes=payload.plain_size_bytes
            )
        finally:
            encrypted.unlink(missing_ok=True)
        if not plain_matches(payload, digest):
            raise ChecksumMismatch(f"{payload.name} decrypted to bytes that differ from the file the backup stored")
        with lock:
            totals["download"] += download_s
            totals["decrypt"] += time.monotonic() - started
            totals["plain"] += digest.size_bytes

    started = time.monotonic()
    with gpg_home(workdir) as home:
        imported = prepare_decryption(home, key)
        # Largest first, so the longest fetches start first; the first failure is raised once
        # the fetches already running have ended (nothing is left running in the background).
        ordered = sorted(members.items(), key=lambda item: -item[1].size_bytes)
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fetch-dir") as pool:
            futures = [pool.submit(fetch, member, payload, imported) for member, payload in ordered]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    seconds = time.monotonic() - started
    log.info(
        "fetched %d files of directory dump %s: %s plain in %.1f s",
        len(members),
        backup_set.backup_set_id,
        human_bytes(int(totals["plain"])),
        seconds,
    )
    # Summed over the parallel fetches, the two steps' shares of the wall time.
    busy = max(totals["download"] + totals["decrypt"], 1e-9)
    return FetchedPayload(
        directory,
        manifest.size_bytes,
        int(totals["plain"]),
        seconds * totals["download"] / busy,
        seconds * totals["decrypt"] / busy,
    )


def pg_restore_argv(pg: PgInstall, archive: Path, *, dbname: str, jobs: int, verbose: bool = False) -> list[str]:
    """pg_restore into ``dbname``; owners and grants are left out because the isolated restore
    server need not have production's roles. The connection comes from the environment."""
    return [
        pg.program("pg_restore"),
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
        "--no-password",
        *(["--verbose"] if verbose else []),
        f"--jobs={jobs}",
        f"--dbname={dbname}",
        str(archive),
    ]


def source_database_size(backup_set: BackupSet) -> int | None:
    """The dumped database's size as its server reported it in the snapshot (the manifest's
    ``server``), the total a restore's progress counts towards; None for older manifests."""
    size = (backup_set.manifest.body.get("server") or {}).get("database_size_bytes")
    return int(size) if size else None


def restored_bytes(target: ConnectionInfo) -> Callable[[], int]:
    """pg_database_size of ``target`` as a restore fills it, read when a progress line is due;
    a refused or busy connection repeats the last reading rather than stopping the restore."""
    last = [0]

    def read() -> int:
        try:
            with connect(target) as connection:
                row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
            last[0] = int(row[0]) if row else last[0]
        except Exception as exc:  # progress must never fail the restore it reports on
            log.debug("restore progress: cannot read the size of %s: %s", target.describe(), exc)
        return last[0]

    return read


def run_pg_restore(
    target: ConnectionInfo,
    archive: Path,
    *,
    jobs: int,
    expected_bytes: int | None = None,
    on_line: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """pg_restore -j N --exit-on-error into ``target``; ToolFailed with pg_restore's error line.
    Progress (the restored database's size of ``expected_bytes``, the source's) goes to the log.
    ``on_line``: called with each line of ``pg_restore --verbose`` as it comes (which item it
    restores, which it has finished)."""
    started = time.monotonic()
    # pg_restore of the target server's major (or newer): an upgrade rehearsal restores a set taken
    # from an older server, whose archive every newer pg_restore reads.
    argv = pg_restore_argv(client_tools(target), archive, dbname=target.dbname, jobs=jobs, verbose=on_line is not None)
    # What pg_restore says besides its verbose progress: the error and the lines around it.
    said: deque[str] = deque(maxlen=40)
    with ProgressLog(
        f"pg_restore -j {jobs} into {target.describe()}", restored_bytes(target), expected_bytes=expected_bytes
    ):
        process = subprocess.Popen(
            argv, env=tool_env(target), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        with process:
            try:
                for raw in process.stderr:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    if on_line is not None:
                        on_line(line)
                    if line.strip() and not _VERBOSE_PROGRESS.match(line):
                        said.append(line)
            except BaseException:
                process.kill()  # interrupted: no pg_restore left writing into the database
                raise
        returncode = process.returncode
    if returncode != 0:
        lines = list(said)
        for line in lines[-20:]:
            log.error("pg_restore: %s", line)
        error = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        raise ToolFailed("pg_restore", returncode, error)
    seconds = time.monotonic() - started
    log.info("pg_restore -j %d into %s finished in %.1f s", jobs, target.describe(), seconds)
    return {"seconds": round(seconds, 3), "jobs": jobs}
