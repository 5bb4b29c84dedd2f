"""The data directory of a point-in-time recovery: built from a base backup set, proven with
``pg_verifybackup``, and set up to recover to its target without touching production.

Each payload is downloaded and its sha256 proven against manifest.json BEFORE it is decrypted;
then ``gpg -d | zstd -d | tar -x`` streams it into place (no plain tar is staged) while the plain
bytes are hashed against the sha256 the backup recorded. ``pg_verifybackup`` then checks every
file against PostgreSQL's own backup_manifest before the server is ever started.

An incremental base backup (PostgreSQL 17+) is restored from its chain (``restore_chain``): every
payload of every link is downloaded and proven first, so a corrupt or missing link is named
before a byte is written; then each link is extracted into its own directory beside the data
directory (same file system: ``pg_combinebackup --link`` hard-links instead of copying), proven
with pg_verifybackup against its own backup_manifest, and ``pg_combinebackup`` (tip last)
writes the data directory, which pg_verifybackup proves against the manifest pg_combinebackup
wrote. A full set alone takes ``restore_base_backup``, unchanged.

The recovered server listens on 127.0.0.1 only, never archives (archive_mode=off, so it cannot
write into production's WAL spool or store), and while it recovers it also accepts trusted
local connections on a private socket directory (0700, the server's OS user) so the engine can
watch it without knowing a password; that line of pg_hba.conf is removed after promotion.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from hms_dr.physical.recoveryplan import BaseBackup
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, pg_verifybackup_argv, read_verify_errors
from hms_dr.progress import ProgressLog
from hms_dr.server_user import chown_to_server, prepare_server_dir, run_server_tool, server_command
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
CHAIN_EXTRACT_WORKERS = 2
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


def restore_chain(
    store: Store,
    cluster: str,
    chain: Sequence[BaseBackup],
    key: DecryptionKey,
    data_dir: Path,
    *,
    staging_dir: Path,
) -> dict[str, Any]:
    """Build ``data_dir`` (already created for the server, empty) from ``chain``: the full set
    first, the tip last. One set is ``restore_base_backup``, unchanged. Returns the chain's ids,
    sizes and seconds per step."""
    if len(chain) == 1:
        return restore_base_backup(store, cluster, chain[0], key, data_dir, staging_dir=staging_dir)
    tip = chain[-1]
    what = f"the chain of base backup set {tip.backup_set_id} ({len(chain)} sets)"
    refuse_short_staging(chain, staging_dir, what=what)
    seconds: dict[str, float] = {}
    workdir = staging_dir / f"chain-{tip.backup_set_id}-{os.getpid()}"
    # Beside the data directory, so on its file system: pg_combinebackup --link can hard-link.
    extracts = data_dir.parent / f".{data_dir.name}.chain-{os.getpid()}"
    for stale in sorted(data_dir.parent.glob(f".{data_dir.name}.chain-*")):
        # Left by a recovery that was killed (a clean failure removes its own): a copy of the
        # cluster, so it is named; not removed, since another recovery might be using it.
        log.warning("extracts of an earlier chain restore are still in %s: remove it once no recovery runs", stale)
    workdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    try:
        started = time.monotonic()
        downloaded = _download_chain(store, cluster, chain, workdir)
        seconds["download"] = time.monotonic() - started

        started = time.monotonic()
        prepare_server_dir(extracts, 0o700)
        with gpg_home(staging_dir) as home:
            imported = prepare_decryption(home, key)

            def extract_and_verify(base: BaseBackup) -> Path:
                link_dir = _extract_link(
                    base, downloaded, imported, extracts / base.backup_set_id, with_wal=base is tip
                )
                verify_data_dir(
                    base,
                    link_dir / BACKUP_MANIFEST,
                    link_dir,
                    what=f"base backup set {base.backup_set_id} of {what}",
                    parse_wal=base is tip,
                )
                return link_dir

            # The full set is most of the bytes; the incrementals are small and mostly gpg's and
            # pg_verifybackup's start-up: they run beside it (two at a time: the decryption and
            # decompression of one link already keep a core busy).
            with ThreadPoolExecutor(max_workers=CHAIN_EXTRACT_WORKERS, thread_name_prefix="chain-link") as pool:
                link_dirs = list(pool.map(extract_and_verify, chain))
        seconds["extract_and_verify_links"] = time.monotonic() - started

        started = time.monotonic()
        linked = _same_file_system(extracts, data_dir)
        combined_bytes = _combine(link_dirs, data_dir, link=linked, what=what)
        seconds["combine"] = time.monotonic() - started

        started = time.monotonic()
        verified_by = verify_data_dir(
            tip, data_dir / BACKUP_MANIFEST, data_dir, what=f"the data directory combined from {what}"
        )
        seconds["pg_verifybackup"] = time.monotonic() - started
        # pg_combinebackup's manifest has served; the data directory is then what a full set gives.
        (data_dir / BACKUP_MANIFEST).unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(extracts, ignore_errors=True)
        if extracts.exists():  # a copy of the cluster, patients' rows included: never left silently
            log.error("could not remove the chain's extracts in %s: remove that directory by hand", extracts)
    payloads = [p for base in chain for p in _restored_payloads(base, with_wal=base is tip)]
    plain = sum(p.plain_size_bytes or 0 for p in payloads)
    log.info(
        "restored %s (%s) into %s: %s plain; download %.1f s, extract and verify links %.1f s, "
        "pg_combinebackup %s %.1f s, pg_verifybackup %.1f s",
        what,
        ", ".join(b.backup_set_id for b in chain),
        data_dir,
        human_bytes(plain),
        seconds["download"],
        seconds["extract_and_verify_links"],
        "--link" if linked else "(copy)",
        seconds["combine"],
        seconds["pg_verifybackup"],
    )
    return {
        "chain": [b.backup_set_id for b in chain],
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "stored_bytes": sum(p.size_bytes for p in payloads),
        "plain_bytes": plain,
        "combined_bytes": combined_bytes,
        "combined_with": "pg_combinebackup --link" if linked else "pg_combinebackup (copy)",
        "verified_by": verified_by,
        "links_verified_by": "pg_verifybackup",
    }


def refuse_short_staging(chain: Sequence[BaseBackup], staging_dir: Path, *, what: str) -> None:
    """PreflightFailed when staging cannot hold every stored payload of ``chain`` at once: they
    are all downloaded and proven before the first is decrypted."""
    needed = sum(p.size_bytes for base in chain for p in base.backup_set.manifest.payloads)
    free = shutil.disk_usage(staging_dir).free
    if free < needed:
        raise PreflightFailed(
            f"staging {staging_dir} has {human_bytes(free)} free; {what} needs {human_bytes(needed)} to download "
            "and prove every link before anything is restored: refused, nothing was touched",
            hint="free space in staging, or recover from an older full base backup set (backup_set_id)",
        )


def _restored_payloads(base: BaseBackup, *, with_wal: bool = True) -> list[Payload]:
    """What a chain's restore reads of one link: its files and its backup_manifest, and the WAL of
    its backup window for the tip only (pg_combinebackup's result holds the tip's pg_wal alone,
    and replay starts from the tip)."""
    formats = (BASE_TAR_FORMAT, WAL_TAR_FORMAT, MANIFEST_FORMAT) if with_wal else (BASE_TAR_FORMAT, MANIFEST_FORMAT)
    return [payload_of(base, fmt) for fmt in formats]


def _download_chain(
    store: Store, cluster: str, chain: Sequence[BaseBackup], workdir: Path
) -> dict[tuple[str, str], Path]:
    """Every payload of every link into ``workdir``, each proven against its sha256; the first
    that fails is named (set and payload) before anything is decrypted or extracted."""
    downloaded: dict[tuple[str, str], Path] = {}
    expected = sum(p.size_bytes for base in chain for p in _restored_payloads(base, with_wal=base is chain[-1]))
    done = 0
    with ProgressLog(f"downloading the {len(chain)} sets of the chain", lambda: done, expected_bytes=expected):
        for position, base in enumerate(chain, start=1):
            set_dir = workdir / base.backup_set_id
            set_dir.mkdir(mode=0o700)
            for payload in _restored_payloads(base, with_wal=base is chain[-1]):
                object_key = key_for(cluster, BackupKind.BASE, base.backup_set_id, payload.name)
                try:
                    download_verified(store, object_key, payload, set_dir / payload.name)
                except ChecksumMismatch as exc:
                    raise ChecksumMismatch(
                        f"{payload.name} of base backup set {base.backup_set_id} (link {position} of {len(chain)} of "
                        f"the chain of {chain[-1].backup_set_id}) is corrupt, nothing was restored: {exc.message}",
                        hint="recover from another base backup set (backup_set_id), repair the set from the offsite "
                        "copy, and take a new full base backup",
                    ) from None
                downloaded[(base.backup_set_id, payload.format)] = set_dir / payload.name
                done += payload.size_bytes
    return downloaded


def _extract_link(
    base: BaseBackup,
    downloaded: Mapping[tuple[str, str], Path],
    imported: ImportedKey,
    link_dir: Path,
    *,
    with_wal: bool,
) -> Path:
    """One proven link decrypted into ``link_dir`` (the server's), laid out as pg_combinebackup
    reads it: base.tar's files, pg_wal.tar in pg_wal/ (the tip's; an inner link's pg_wal/ stays
    empty), backup_manifest beside them. Each encrypted download is removed once extracted,
    freeing staging as the chain goes."""
    prepare_server_dir(link_dir, 0o700)
    steps = [(BASE_TAR_FORMAT, link_dir)] + ([(WAL_TAR_FORMAT, link_dir / "pg_wal")] if with_wal else [])
    prepare_server_dir(link_dir / "pg_wal", 0o700)
    for fmt, destination in steps:
        encrypted = downloaded[(base.backup_set_id, fmt)]
        prepare_server_dir(destination, 0o700)
        _decrypt_and_extract(encrypted, payload_of(base, fmt), imported, destination)
        encrypted.unlink()
    encrypted = downloaded[(base.backup_set_id, MANIFEST_FORMAT)]
    _decrypt_to_file(encrypted, payload_of(base, MANIFEST_FORMAT), imported, link_dir / BACKUP_MANIFEST)
    chown_to_server(link_dir / BACKUP_MANIFEST)
    encrypted.unlink()
    return link_dir


def _same_file_system(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _combine(link_dirs: Sequence[Path], data_dir: Path, *, link: bool, what: str) -> int:
    """pg_combinebackup of ``link_dirs`` (full first, tip last) into the empty ``data_dir``, run
    as the server's OS user with the chain's own major; the bytes of the result.

    --link hard-links the unchanged files from the extracts (which are removed afterwards)
    instead of copying them. --no-sync: as for a full set extracted by tar, the server syncs the
    whole data directory before it replays (it starts from a backup, not a clean shutdown). The
    manifest it writes keeps the default CRC32C checksums: every input was already proven
    against PostgreSQL's own SHA-256 manifest, so the check of the result only has to catch what
    the combination itself wrote wrong, and CRC32C does that at memory speed. pg_wal of the
    result is the tip's (the WAL of the tip's backup window); replay goes on from the archive."""
    pg = data_install(data_dir_major(link_dirs[-1]), data=what)
    argv = [
        pg.program("pg_combinebackup"),
        *(["--link"] if link else []),
        "--no-sync",
        f"--output={data_dir}",
        *map(str, link_dirs),
    ]
    started = time.monotonic()
    with ProgressLog(f"pg_combinebackup of {what}", lambda: _tree_bytes(data_dir)):
        run_server_tool(argv)
    seconds = time.monotonic() - started
    size = _tree_bytes(data_dir)
    log.info(
        "pg_combinebackup %s %s into %s: %s in %.1f s, %s",
        pg.version,
        "hard-linked" if link else "copied",
        data_dir,
        human_bytes(size),
        seconds,
        human_rate(size, seconds),
    )
    return size


def _tree_bytes(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


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


def verify_data_dir(
    base: BaseBackup, pg_manifest: Path, data_dir: Path, *, what: str | None = None, parse_wal: bool = True
) -> str:
    """pg_verifybackup of the extracted set against its backup_manifest; BackupVerificationFailed
    with the first error (it names the file) otherwise. ``what`` names the directory's contents
    in the messages (default: the set)."""
    what = what or f"base backup set {base.backup_set_id}"
    pg = data_install(data_dir_major(data_dir), data=what)
    argv = pg_verifybackup_argv(pg, pg_manifest, data_dir, parse_wal=parse_wal)
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        errors = read_verify_errors(done.stderr) or [line for line in done.stderr.splitlines() if line.strip()][-1:]
        for line in done.stderr.splitlines():
            log.error("pg_verifybackup: %s", line)
        more = f" (and {len(errors) - 1} more, see the log)" if len(errors) > 1 else ""
        raise BackupVerificationFailed(
            f"{what} fails pg_verifybackup after extraction into {data_dir}: "
            f"{errors[0] if errors else f'exit {done.returncode}'}{more}",
            hint="the stored set differs from what PostgreSQL recorded in its backup_manifest: recover from another base "
            "backup set (backup_set_id) and investigate this one",
        )
    log.info("pg_verifybackup: every file of %s and its WAL range match its backup_manifest", what)
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
