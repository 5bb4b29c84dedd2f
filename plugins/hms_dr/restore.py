"""Restoring a logical backup set: its payload fetched (proven, then decrypted) into a private
file, and ``pg_restore -j`` of that file into a scratch database (``hms_dr.scratch.database``).

The set's payload is downloaded and its sha256 proven against the manifest BEFORE anything is
decrypted (``hms_dr.decrypt``); the plain bytes are checked against the dump the backup verified.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import BackupSet, key_for
from hms_dr.crypto import DecryptionKey
from hms_dr.database import client_tools
from hms_dr.decrypt import decrypt_file, download_verified, plain_matches
from hms_dr.errors import ChecksumMismatch, ToolFailed
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo, tool_env
from hms_dr.units import human_bytes

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedPayload:
    """A payload proven against its manifest and decrypted into a private local file."""

    path: Path
    stored_size_bytes: int
    plain_size_bytes: int
    download_seconds: float
    decrypt_seconds: float


def fetch_for_restore(store: Store, backup_set: BackupSet, key: DecryptionKey, workdir: Path) -> FetchedPayload:
    """Download, prove, then decrypt the set's single payload into ``workdir``."""
    payload = backup_set.manifest.payloads[0]
    object_key = key_for(backup_set.manifest.cluster, backup_set.kind, backup_set.backup_set_id, payload.name)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    encrypted = workdir / payload.name
    plain = workdir / (payload.name.split(".", 1)[0] + ".plain")
    download_s = download_verified(store, object_key, payload, encrypted)
    started = time.monotonic()
    try:
        digest = decrypt_file(encrypted, payload.name, key, plain, staging_dir=workdir)
    finally:
        encrypted.unlink(missing_ok=True)
    decrypt_s = time.monotonic() - started
    if not plain_matches(payload, digest):
        plain.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{payload.name} decrypted to bytes that differ from the dump the backup verified")
    log.info("decrypted %s: %s plain in %.1f s", payload.name, human_bytes(digest.size_bytes), decrypt_s)
    return FetchedPayload(plain, payload.size_bytes, digest.size_bytes, download_s, decrypt_s)


def pg_restore_argv(pg: PgInstall, archive: Path, *, dbname: str, jobs: int) -> list[str]:
    """pg_restore into ``dbname``; owners and grants are left out because the isolated restore
    server need not have production's roles. The connection comes from the environment."""
    return [
        pg.program("pg_restore"),
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
        "--no-password",
        f"--jobs={jobs}",
        f"--dbname={dbname}",
        str(archive),
    ]


def run_pg_restore(target: ConnectionInfo, archive: Path, *, jobs: int) -> dict[str, Any]:
    """pg_restore -j N --exit-on-error into ``target``; ToolFailed with pg_restore's error line."""
    started = time.monotonic()
    # pg_restore of the target server's major (or newer): an upgrade rehearsal restores a set taken
    # from an older server, whose archive every newer pg_restore reads.
    argv = pg_restore_argv(client_tools(target), archive, dbname=target.dbname, jobs=jobs)
    done = subprocess.run(argv, env=tool_env(target), capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        for line in lines[-20:]:
            log.error("pg_restore: %s", line)
        error = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        raise ToolFailed("pg_restore", done.returncode, error)
    seconds = time.monotonic() - started
    log.info("pg_restore -j %d into %s finished in %.1f s", jobs, target.describe(), seconds)
    return {"seconds": round(seconds, 3), "jobs": jobs}
