"""The data directory of a point-in-time recovery: built from a base backup set, proven with
``pg_verifybackup``, and set up to recover to its target without touching production.

Each payload is downloaded and its sha256 proven against manifest.json BEFORE it is decrypted;
then ``gpg -d | zstd -d | tar -x`` streams it into place (no plain tar is staged) while the plain
bytes are hashed against the sha256 the backup recorded. ``pg_verifybackup`` then checks every
file against PostgreSQL's own backup_manifest before the server is ever started.

The recovered server listens on 127.0.0.1 only, never archives (archive_mode=off, so it cannot
write into production's WAL spool or store), and while it recovers it also accepts trusted
local connections on a private socket directory (0700, the server's OS user) so the engine can
watch it without knowing a password; that line of pg_hba.conf is removed after promotion.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import key_for
from hms_dr.crypto import DecryptionKey, ImportedKey, prepare_decryption
from hms_dr.decrypt import decrypt_payload, decrypt_to_file, download_verified, plain_matches
from hms_dr.digests import PlainDigest
from hms_dr.errors import BackupVerificationFailed, ChecksumMismatch, ManifestInvalid, PreflightFailed, ToolFailed
from hms_dr.files import write_file_atomically
from hms_dr.gpghome import gpg_home
from hms_dr.manifest import BackupKind, Payload
from hms_dr.pginstalls import data_dir_major, data_install
from hms_dr.physical.progress import ProgressLog
from hms_dr.physical.recoveryplan import BaseBackup
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, pg_verifybackup_argv, read_verify_errors
from hms_dr.server_user import prepare_server_dir, server_command
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

BASE_TAR_FORMAT = "pg_basebackup-base-tar"
WAL_TAR_FORMAT = "pg_basebackup-wal-tar"
MANIFEST_FORMAT = "pg_backup_manifest"
SETTINGS_MARKER = "# --- hms-dr point-in-time recovery (hms_dr.physical.datadir) ---"
TRUST_MARKER = "# hms-dr recovery: trusted on the private socket while recovering; removed at promotion"
RECOVERY_SETTINGS_RESET_AFTER_PROMOTION = (
    "restore_command", "recovery_target", "recovery_target_time", "recovery_target_xid", "recovery_target_name",
    "recovery_target_lsn", "recovery_target_inclusive", "recovery_target_action", "recovery_target_timeline",
)  # fmt: skip
# Left in the base backup by the server it was taken from; never meaningful in a new cluster.
STALE_FILES = ("postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal")


def refuse_non_empty(data_dir: Path) -> None:
    """PreflightFailed when ``data_dir`` exists and holds anything (or is not a directory)."""
    if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()):
        raise PreflightFailed(f"recovery data directory {data_dir} exists and is not a directory: refused")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise PreflightFailed(
            f"recovery data directory {data_dir} is not empty: refused, nothing was touched",
            hint="point-in-time recovery only ever builds a new cluster; give it an empty or new directory",
        )


def payload_of(base: BaseBackup, fmt: str) -> Payload:
    for payload in base.backup_set.manifest.payloads:
        if payload.format == fmt:
            return payload
    raise ManifestInvalid(f"base backup set {base.backup_set_id} has no {fmt} payload")


def restore_base_backup(
    store: Store, cluster: str, base: BaseBackup, key: DecryptionKey, data_dir: Path, *, staging_dir: Path
) -> dict[str, Any]:
    """Download, prove, decrypt and extract the set (stored under ``cluster``) into ``data_dir``
    (already created for the server), then pg_verifybackup it. Returns sizes and seconds per step."""
    seconds: dict[str, float] = {}
    sizes: dict[str, int] = {"stored_bytes": 0, "plain_bytes": 0}
    workdir = staging_dir / f"base-{base.backup_set_id}-{os.getpid()}"
    workdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    try:
        with gpg_home(staging_dir) as home:
            imported = prepare_decryption(home, key)
            pg_manifest = workdir / BACKUP_MANIFEST
            steps = (
                ("base", BASE_TAR_FORMAT, data_dir),
                ("wal", WAL_TAR_FORMAT, data_dir / "pg_wal"),
                ("manifest", MANIFEST_FORMAT, None),
            )
            for step, fmt, destination in steps:
                payload = payload_of(base, fmt)
                object_key = key_for(cluster, BackupKind.BASE, base.backup_set_id, payload.name)
                encrypted = workdir / payload.name
                started = time.monotonic()
                download_verified(store, object_key, payload, encrypted)  # sha256 proven before decrypting
                seconds[f"download_{step}"] = time.monotonic() - started
                started = time.monotonic()
                try:
                    if destination is None:
                        _decrypt_to_file(encrypted, payload, imported, pg_manifest)
                    else:
                        prepare_server_dir(destination, 0o700)
                        _decrypt_and_extract(encrypted, payload, imported, destination)
                finally:
                    encrypted.unlink(missing_ok=True)
                seconds[f"extract_{step}"] = time.monotonic() - started
                sizes["stored_bytes"] += payload.size_bytes
                sizes["plain_bytes"] += payload.plain_size_bytes or 0
            started = time.monotonic()
            verified_by = verify_data_dir(base, pg_manifest, data_dir)
            seconds["pg_verifybackup"] = time.monotonic() - started
    finally:
        for leftover in sorted(workdir.glob("*")):
            leftover.unlink(missing_ok=True)
        workdir.rmdir()
    return {"seconds": {k: round(v, 3) for k, v in seconds.items()}, **sizes, "verified_by": verified_by}


def _check_plain(payload: Payload, digest: PlainDigest, where: str) -> None:
    if not plain_matches(payload, digest):
        raise ChecksumMismatch(
            f"{payload.name} decrypted to {digest.size_bytes} bytes that differ from the {where} the backup verified"
        )


def _decrypt_to_file(encrypted: Path, payload: Payload, imported: ImportedKey, destination: Path) -> None:
    _check_plain(payload, decrypt_to_file(encrypted, payload.name, imported, destination), "file")


def _decrypt_and_extract(encrypted: Path, payload: Payload, imported: ImportedKey, destination: Path) -> None:
    """gpg -d | zstd -d | tar -x into ``destination``: the plain tar is hashed on its way to tar,
    which runs as the server's OS user so every file it makes belongs to the server."""
    digest = PlainDigest()
    started = time.monotonic()
    tar = subprocess.Popen(
        server_command(["tar", "-x", "-f", "-", "-C", str(destination)]),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    assert tar.stdin is not None and tar.stderr is not None
    try:
        with ProgressLog(
            f"restoring {payload.name}", lambda: digest.size_bytes, expected_bytes=payload.plain_size_bytes
        ):
            with encrypted.open("rb") as source:
                decrypt_payload(source, payload.name, imported, tar.stdin.write, digest=digest)
        tar.stdin.close()
        stderr = tar.stderr.read().decode("utf-8", "replace")
        if tar.wait() != 0:
            raise ToolFailed("tar -x", tar.returncode, _last_line(stderr))
    except BrokenPipeError:
        tar.wait()
        raise ToolFailed("tar -x", tar.returncode, _last_line(tar.stderr.read().decode("utf-8", "replace"))) from None
    finally:
        if tar.poll() is None:
            tar.kill()
            tar.wait()
    _check_plain(payload, digest, "tar")
    seconds = time.monotonic() - started
    size = digest.size_bytes
    log.info(
        "extracted %s into %s: %s in %.1f s, %s",
        payload.name,
        destination,
        human_bytes(size),
        seconds,
        human_rate(size, seconds),
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def verify_data_dir(base: BaseBackup, pg_manifest: Path, data_dir: Path) -> str:
    """pg_verifybackup of the extracted set against its backup_manifest; BackupVerificationFailed
    with the first error (it names the file) otherwise."""
    pg = data_install(data_dir_major(data_dir), data=f"base backup set {base.backup_set_id}")
    done = subprocess.run(pg_verifybackup_argv(pg, pg_manifest, data_dir), capture_output=True, text=True)
    if done.returncode != 0:
        errors = read_verify_errors(done.stderr) or [line for line in done.stderr.splitlines() if line.strip()][-1:]
        for line in done.stderr.splitlines():
            log.error("pg_verifybackup: %s", line)
        more = f" (and {len(errors) - 1} more, see the log)" if len(errors) > 1 else ""
        raise BackupVerificationFailed(
            f"base backup set {base.backup_set_id} fails pg_verifybackup after extraction into {data_dir}: "
            f"{errors[0] if errors else f'exit {done.returncode}'}{more}",
            hint="the stored set differs from what PostgreSQL recorded in its backup_manifest: recover from another base "
            "backup set (backup_set_id) and investigate this one",
        )
    log.info(
        "pg_verifybackup: every file of base backup set %s and its WAL range match its backup_manifest",
        base.backup_set_id,
    )
    return "pg_verifybackup"


def conf_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def recovery_settings(
    *, port: int, socket_dir: Path, restore_command: str, target_settings: Mapping[str, str]
) -> dict[str, str]:
    """Every setting the recovering server runs with (appended to postgresql.auto.conf, read last)."""
    return {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(socket_dir),
        "unix_socket_permissions": "0700",
        # A copy of production must never archive into production's spool or store.
        "archive_mode": "off",
        # Read-only connections while replaying, so progress can be watched.
        "hot_standby": "on",
        # The FATAL line that explains a failed recovery must land in the log file recover() reads.
        "logging_collector": "off",
        "primary_conninfo": "",
        "primary_slot_name": "",
        "restore_command": restore_command,
        "recovery_target_timeline": "latest",
        "recovery_target_action": "promote",
        **target_settings,
    }


def write_recovery_config(data_dir: Path, settings: Mapping[str, str]) -> None:
    """recovery.signal, the settings block in postgresql.auto.conf, and the trusted private socket
    line at the top of pg_hba.conf; files the backup lacks get minimal versions."""
    for name in STALE_FILES:
        (data_dir / name).unlink(missing_ok=True)
    conf = data_dir / "postgresql.conf"
    if not conf.exists():  # e.g. a Debian cluster keeps it in /etc: the backup has none
        write_server_file(conf, "# written by hms-dr point-in-time recovery: the backup held no postgresql.conf\n")
    auto = data_dir / "postgresql.auto.conf"
    existing = auto.read_text(encoding="utf-8") if auto.exists() else "# Do not edit this file manually!\n"
    block = [SETTINGS_MARKER, *(f"{name} = {conf_value(value)}" for name, value in settings.items())]
    write_server_file(auto, existing.rstrip("\n") + "\n" + "\n".join(block) + "\n")
    hba = data_dir / "pg_hba.conf"
    original = hba.read_text(encoding="utf-8") if hba.exists() else "host all all 127.0.0.1/32 scram-sha-256\n"
    write_server_file(hba, f"{TRUST_MARKER}\nlocal all all trust\n{original}")
    write_server_file(data_dir / "recovery.signal", "")


def remove_recovery_trust(data_dir: Path) -> None:
    """Drop the trusted private-socket line written for the recovery (reload the server after)."""
    hba = data_dir / "pg_hba.conf"
    lines = hba.read_text(encoding="utf-8").splitlines(keepends=True)
    if lines[:2] == [f"{TRUST_MARKER}\n", "local all all trust\n"]:
        write_server_file(hba, "".join(lines[2:]))


def write_server_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` atomically as a file of the server's OS user."""
    write_file_atomically(path, text, mode, for_server=True)
