"""Proving a tar-format base backup with ``pg_verifybackup`` before anything is stored.

PostgreSQL 15's pg_verifybackup reads a data directory, not tars: ``base.tar`` is extracted into
a private scratch directory, ``pg_wal.tar`` into its ``pg_wal`` and each tablespace ``<oid>.tar``
into ``pg_tblspc/<oid>``; pg_verifybackup then checks every file against the backup_manifest
beside the tars (size and SHA-256) and parses the WAL range with pg_waldump.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from hms_dr.errors import BackupVerificationFailed
from hms_dr.pgtools import tool_path, tool_version
from hms_dr.physical.progress import ProgressLog
from hms_dr.units import human_bytes, human_rate

log = logging.getLogger(__name__)

BACKUP_MANIFEST = "backup_manifest"
BASE_TAR = "base.tar"
WAL_TAR = "pg_wal.tar"
BACKUP_LABEL = "backup_label"


@dataclass(frozen=True)
class Verification:
    """What pg_verifybackup proved, and what it took."""

    verified_by: str  # "pg_verifybackup 15.18"
    extracted_bytes: int
    extract_seconds: float
    verify_seconds: float


def extract_destination(tar_name: str, extract_dir: Path) -> Path:
    """Where a tar of pg_basebackup -Ft belongs in a data directory."""
    if tar_name == BASE_TAR:
        return extract_dir
    if tar_name == WAL_TAR:
        return extract_dir / "pg_wal"
    oid = tar_name.removesuffix(".tar")
    if not oid.isdigit() or not tar_name.endswith(".tar"):
        raise BackupVerificationFailed(f"unexpected file {tar_name!r} in pg_basebackup's output")
    return extract_dir / "pg_tblspc" / oid


def _private_member(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
    """tarfile's "data" filter (no absolute paths, no escapes, no devices), then owner-only modes:
    the extracted files are a copy of the whole cluster, patients' rows included."""
    member = tarfile.data_filter(member, destination)
    if member.issym() or member.islnk():
        return member
    return member.replace(mode=0o700 if member.isdir() else 0o600, deep=False)


def extract_tar_backup(tar_dir: Path, extract_dir: Path) -> int:
    """Extract every tar of ``tar_dir`` where it belongs under ``extract_dir``; the bytes written."""
    tars = sorted(tar_dir.glob("*.tar"), key=lambda p: (p.name != BASE_TAR, p.name))  # base.tar first: it makes pg_wal/
    if not tars or tars[0].name != BASE_TAR:
        raise BackupVerificationFailed(f"no {BASE_TAR} in {tar_dir}: pg_basebackup's output is incomplete")
    extract_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = 0
    with ProgressLog(
        f"extracting {tar_dir.name} for pg_verifybackup",
        lambda: written,
        expected_bytes=sum(t.stat().st_size for t in tars),
    ):
        for tar_path in tars:
            destination = extract_destination(tar_path.name, extract_dir)
            destination.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                with tarfile.open(tar_path, "r:") as archive:
                    for member in archive:
                        archive.extract(member, destination, filter=_private_member)
                        written += member.size
            except (tarfile.TarError, OSError) as exc:
                raise BackupVerificationFailed(f"cannot extract {tar_path}: {exc}") from None
    return written


def pg_verifybackup_argv(manifest_path: Path, backup_dir: Path) -> list[str]:
    """pg_verifybackup of an extracted backup whose manifest lies elsewhere (tar format)."""
    return [tool_path("pg_verifybackup"), "--quiet", f"--manifest-path={manifest_path}", str(backup_dir)]


def read_verify_errors(stderr: str) -> list[str]:
    """The error lines of pg_verifybackup (and the pg_waldump it runs), in the order printed."""
    errors = []
    for line in stderr.splitlines():
        line = line.strip()
        if "error:" in line or "fatal:" in line:
            errors.append(line.removeprefix("pg_verifybackup: error: "))
    return errors


def run_pg_verifybackup(manifest_path: Path, backup_dir: Path) -> None:
    """pg_verifybackup; BackupVerificationFailed with its first error line (which names the file)."""
    done = subprocess.run(pg_verifybackup_argv(manifest_path, backup_dir), capture_output=True, text=True)
    if done.returncode == 0:
        return
    errors = read_verify_errors(done.stderr) or [line for line in done.stderr.splitlines() if line.strip()][-1:]
    for line in done.stderr.splitlines():
        log.error("pg_verifybackup: %s", line)
    more = f" (and {len(errors) - 1} more error(s), see the log)" if len(errors) > 1 else ""
    raise BackupVerificationFailed(
        f"pg_verifybackup rejected the base backup in {backup_dir}: {errors[0] if errors else f'exit {done.returncode}'}{more}",
        hint="the backup was not stored; rerun it, and check the server log and the staging disk if it fails again",
    )


def verify_tar_backup(tar_dir: Path, scratch_dir: Path) -> Verification:
    """Extract ``tar_dir`` into ``scratch_dir``/extract, run pg_verifybackup, remove the extract."""
    extract_dir = scratch_dir / "extract"
    try:
        started = time.monotonic()
        extracted = extract_tar_backup(tar_dir, extract_dir)
        extract_seconds = time.monotonic() - started
        log.info(
            "extracted %s in %.1f s, %s",
            human_bytes(extracted),
            extract_seconds,
            human_rate(extracted, extract_seconds),
        )
        started = time.monotonic()
        run_pg_verifybackup(tar_dir / BACKUP_MANIFEST, extract_dir)
        verify_seconds = time.monotonic() - started
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)
    _, version = tool_version("pg_verifybackup")
    log.info("pg_verifybackup %s verified every file and the WAL range in %.1f s", version, verify_seconds)
    return Verification(f"pg_verifybackup {version}", extracted, extract_seconds, verify_seconds)


def read_backup_label(base_tar: Path) -> str:
    """backup_label from inside base.tar (pg_basebackup sends it first, so this reads little)."""
    with tarfile.open(base_tar, "r:") as archive:
        for member in archive:
            if member.name == BACKUP_LABEL and member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    return handle.read().decode("utf-8")
    raise BackupVerificationFailed(f"{base_tar} holds no {BACKUP_LABEL}: not a base backup")
