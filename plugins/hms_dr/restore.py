"""Restoring a logical backup set into a scratch database that can never be production.

The set's payload is downloaded and its sha256 proven against the manifest BEFORE anything is
decrypted; only then is it decrypted and decompressed into a private file that ``pg_restore -j``
reads. Every step refuses a target that is the production database or its cluster.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr import sqlfiles
from hms_dr.catalog import BackupSet, key_for
from hms_dr.crypto import DecryptionKey, gpg_home, prepare_decryption
from hms_dr.database import connect
from hms_dr.digests import sha256_of_file
from hms_dr.errors import ChecksumMismatch, ParamInvalid, ToolFailed
from hms_dr.manifest import Payload
from hms_dr.pgtools import ConnectionInfo, tool_env, tool_path
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

CHUNK = 4 << 20
SCRATCH_PREFIX = "hms_restore_test_"
_SCRATCH_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class FetchedPayload:
    """A payload proven against its manifest and decrypted into a private local file."""

    path: Path
    stored_size_bytes: int
    plain_size_bytes: int
    download_seconds: float
    decrypt_seconds: float


def decompression_stage(payload_name: str) -> Stage | None:
    """The decompressor a payload's name calls for (.zst, .gz), or None."""
    stem = payload_name.removesuffix(".gpg")
    if stem.endswith(".zst"):
        return Stage("zstd -d", ["zstd", "-q", "-d", "-c"])
    if stem.endswith(".gz"):
        return Stage("gzip -d", ["gzip", "-d", "-c"])
    return None


def scratch_database_name(backup_set_id: str) -> str:
    """A unique scratch name per run, e.g. hms_restore_test_20261124t020001z_a1b2c3."""
    return f"{SCRATCH_PREFIX}{backup_set_id.lower()}_{secrets.token_hex(3)}"


def refuse_production_target(
    *, target: ConnectionInfo, production: ConnectionInfo, scratch_name: str,
    target_system_id: str | None, production_system_id: str | None,
) -> None:
    """ParamInvalid when the restore would land in production: same database name on the same
    server, or the restore target server IS the production cluster (same system identifier)."""
    if not _SCRATCH_NAME.match(scratch_name):
        raise ParamInvalid(f"scratch database name {scratch_name!r} is not a plain lower-case identifier")
    if scratch_name == production.dbname:
        raise ParamInvalid(f"scratch database name {scratch_name!r} is the production database's name: refused")
    same_address = (target.host, target.port) == (production.host, production.port)
    if same_address and target.dbname == production.dbname:
        raise ParamInvalid(
            f"restore target {target.describe()} is the production database {production.describe()}: refused"
        )
    if target_system_id is not None and target_system_id == production_system_id:
        raise ParamInvalid(
            f"restore target {target.host}:{target.port} is the production cluster (system identifier "
            f"{target_system_id}): restore tests run on an isolated server",
            hint="point the hms_restore_target connection at a separate PostgreSQL server",
        )


def system_identifier(conn: ConnectionInfo) -> str:
    with connect(conn) as connection:
        row = connection.execute(sqlfiles.text("server_identity")).fetchone()
    return str(row[5])


def download_verified(store: Store, key: str, payload: Payload, destination: Path) -> float:
    """Copy the stored bytes to ``destination`` (0600) and prove size and sha256 against the
    manifest; ChecksumMismatch (file removed) names the object otherwise. Returns seconds."""
    started = time.monotonic()
    digest = hashlib.sha256()
    size = 0
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, store.open(key) as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        where = store.describe(key)
        if size != payload.size_bytes:
            raise ChecksumMismatch(f"{where} is {size} bytes, its manifest says {payload.size_bytes} (truncated or replaced)")
        if digest.hexdigest() != payload.sha256:
            raise ChecksumMismatch(f"{where} does not match the sha256 in its manifest (the stored bytes changed)")
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    log.info("downloaded %s: %s, sha256 matches the manifest, %s", store.describe(key), human_bytes(size), human_rate(size, seconds))
    return seconds


def decrypt_file(encrypted: Path, payload_name: str, key: DecryptionKey, destination: Path, *, staging_dir: Path) -> float:
    """gpg -d | [zstd -d] from a proven local file into ``destination`` (0600). Returns seconds."""
    started = time.monotonic()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, gpg_home(staging_dir) as home, encrypted.open("rb") as source:
            imported = prepare_decryption(home, key)
            stages = [imported.decrypt_stage()]
            decompressor = decompression_stage(payload_name)
            if decompressor is not None:
                stages.append(decompressor)
            try:
                with Pipeline(stages, source=source) as pipeline:
                    while chunk := pipeline.output.read(CHUNK):
                        out.write(chunk)
            except ToolFailed as exc:
                if exc.tool.startswith("gpg"):
                    raise imported.explain(exc) from None
                raise
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return time.monotonic() - started


def fetch_for_restore(store: Store, backup_set: BackupSet, key: DecryptionKey, workdir: Path) -> FetchedPayload:
    """Download, prove, then decrypt the set's single payload into ``workdir``."""
    payload = backup_set.manifest.payloads[0]
    object_key = key_for(backup_set.manifest.cluster, backup_set.kind, backup_set.backup_set_id, payload.name)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    encrypted = workdir / payload.name
    plain = workdir / (payload.name.split(".", 1)[0] + ".plain")
    download_s = download_verified(store, object_key, payload, encrypted)
    try:
        decrypt_s = decrypt_file(encrypted, payload.name, key, plain, staging_dir=workdir)
    finally:
        encrypted.unlink(missing_ok=True)
    if payload.plain_sha256 is not None and sha256_of_file(plain) != payload.plain_sha256:
        plain.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{payload.name} decrypted to bytes that differ from the dump the backup verified")
    log.info("decrypted %s: %s plain in %.1f s", payload.name, human_bytes(plain.stat().st_size), decrypt_s)
    return FetchedPayload(plain, payload.size_bytes, plain.stat().st_size, download_s, decrypt_s)


def create_scratch_database(admin: ConnectionInfo, name: str) -> None:
    from psycopg import sql

    with connect(admin) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    log.info("created scratch database %s on %s:%s", name, admin.host, admin.port)


def drop_scratch_database(admin: ConnectionInfo, name: str) -> bool:
    """Drop a scratch database (only ever one named like one); True when it existed."""
    from psycopg import sql

    if not name.startswith(SCRATCH_PREFIX):
        raise ParamInvalid(f"refusing to drop {name!r}: not a scratch database ({SCRATCH_PREFIX}*)")
    with connect(admin) as connection:
        existed = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    log.info("dropped scratch database %s", name)
    return existed


def pg_restore_argv(archive: Path, *, dbname: str, jobs: int) -> list[str]:
    """pg_restore into ``dbname``; owners and grants are left out because the isolated restore
    server need not have production's roles. The connection comes from the environment."""
    return [
        tool_path("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges", "--no-password",
        f"--jobs={jobs}", f"--dbname={dbname}", str(archive),
    ]


def run_pg_restore(target: ConnectionInfo, archive: Path, *, jobs: int) -> dict[str, Any]:
    """pg_restore -j N --exit-on-error into ``target``; ToolFailed with pg_restore's error line."""
    started = time.monotonic()
    argv = pg_restore_argv(archive, dbname=target.dbname, jobs=jobs)
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
