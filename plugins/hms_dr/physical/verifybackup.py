"""Proving a tar-format base backup with ``pg_verifybackup`` before anything is stored.

Before PostgreSQL 18, pg_verifybackup reads a data directory, not tars: ``base.tar`` is extracted
into a private scratch directory, ``pg_wal.tar`` into its ``pg_wal`` and each tablespace
``<oid>.tar`` into ``pg_tblspc/<oid>``; pg_verifybackup then checks every file against the
backup_manifest beside the tars (size and SHA-256) and parses the WAL range with pg_waldump.
From 18 it reads the tars themselves: only pg_wal.tar is extracted, for pg_waldump.
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
from hms_dr.pginstalls import TAR_VERIFY_MAJOR, PgInstall
from hms_dr.physical.backup_manifest import PgBackupManifest, parse_backup_manifest
from hms_dr.progress import ProgressLog
from hms_dr.units import human_bytes, human_rate
from hms_dr.wal.names import format_lsn

log = logging.getLogger(__name__)

BACKUP_MANIFEST = "backup_manifest"
BASE_TAR = "base.tar"
WAL_TAR = "pg_wal.tar"
BACKUP_LABEL = "backup_label"
EXTRACTED_COPY = "extracted-copy"
TARS_IN_PLACE = "tars-in-place"
IN_THE_STREAM = "in-the-stream"


@dataclass(frozen=True)
class Verification:
    """What pg_verifybackup proved, and what it took."""

    verified_by: str  # "pg_verifybackup 15.18"
    extracted_bytes: int
    extract_seconds: float
    verify_seconds: float
    method: str = ""  # EXTRACTED_COPY, TARS_IN_PLACE or IN_THE_STREAM: what the report says was checked, and how

    @property
    def described(self) -> str:
        """One line for the manifest and the report: what was proven, on what, and what was not."""
        if self.method == IN_THE_STREAM:
            return (
                f"passed in the stream before upload: {self.verified_by}; every file's size and SHA-256 against "
                "backup_manifest, none missing or extra, the manifest's own checksum, the WAL of the backup window parsed"
            )
        if self.method == TARS_IN_PLACE:
            return (
                f"passed before upload: {self.verified_by}; every file checked inside the tars (nothing extracted), "
                "the WAL of the backup window parsed from pg_wal.tar's own extract"
            )
        return f"passed on the extracted copy before upload ({self.verified_by})"


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


def pg_verifybackup_argv(pg: PgInstall, manifest_path: Path, backup_dir: Path, *, parse_wal: bool = True) -> list[str]:
    """pg_verifybackup of an extracted backup whose manifest lies elsewhere (tar format);
    ``parse_wal=False`` checks the files alone (a chain's inner link, whose WAL recovery never reads)."""
    argv = [pg.program("pg_verifybackup"), "--quiet", f"--manifest-path={manifest_path}"]
    return [*argv, *([] if parse_wal else ["--no-parse-wal"]), str(backup_dir)]


def pg_verifybackup_tar_argv(pg: PgInstall, tar_dir: Path) -> list[str]:
    """pg_verifybackup reading pg_basebackup's tars as they are (PostgreSQL 18 and later). It checks
    every file inside them against the backup_manifest, but cannot parse WAL inside a tar:
    ``--no-parse-wal``, and ``parse_backup_wal`` does that part from pg_wal.tar alone."""
    return [pg.program("pg_verifybackup"), "--quiet", "--format=tar", "--no-parse-wal", str(tar_dir)]


def pg_waldump_argv(pg: PgInstall, wal_dir: Path, *, timeline: int, start_lsn: str, stop_lsn: str) -> list[str]:
    """pg_waldump reading every record from the backup's start to its stop: what pg_verifybackup
    runs for a directory backup, so a tar backup's WAL is proven the same way."""
    return [
        pg.program("pg_waldump"),
        "--quiet",
        f"--path={wal_dir}",
        f"--timeline={timeline}",
        f"--start={start_lsn}",
        f"--end={stop_lsn}",
    ]


def read_verify_errors(stderr: str) -> list[str]:
    """The error lines of pg_verifybackup (and the pg_waldump it runs), in the order printed."""
    errors = []
    for line in stderr.splitlines():
        line = line.strip()
        if "error:" in line or "fatal:" in line:
            errors.append(line.removeprefix("pg_verifybackup: error: "))
    return errors


def run_pg_verifybackup(pg: PgInstall, manifest_path: Path, backup_dir: Path) -> None:
    """pg_verifybackup of an extracted backup; BackupVerificationFailed with its first error line."""
    _run_verifier(pg_verifybackup_argv(pg, manifest_path, backup_dir), backup_dir)


def _run_verifier(argv: list[str], backup_dir: Path) -> None:
    """pg_verifybackup or pg_waldump; BackupVerificationFailed with the first error line (which
    names the file or the WAL record)."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode == 0:
        return
    tool = Path(argv[0]).name
    errors = read_verify_errors(done.stderr) or [line for line in done.stderr.splitlines() if line.strip()][-1:]
    for line in done.stderr.splitlines():
        log.error("%s: %s", tool, line)
    more = f" (and {len(errors) - 1} more error(s), see the log)" if len(errors) > 1 else ""
    raise BackupVerificationFailed(
        f"{tool} rejected the base backup in {backup_dir}: {errors[0] if errors else f'exit {done.returncode}'}{more}",
        hint="the backup was not stored; rerun it, and check the server log and the staging disk if it fails again",
    )


def parse_backup_wal(pg: PgInstall, wal_dir: Path, pg_manifest: PgBackupManifest, *, where: Path) -> float:
    """pg_waldump over every WAL range the manifest names, from the WAL files in ``wal_dir``; the seconds it took."""
    started = time.monotonic()
    for wal_range in pg_manifest.wal_ranges:
        argv = pg_waldump_argv(
            pg,
            wal_dir,
            timeline=wal_range.timeline,
            start_lsn=format_lsn(wal_range.start_lsn),
            stop_lsn=format_lsn(wal_range.end_lsn),
        )
        _run_verifier(argv, where)
    return time.monotonic() - started


def verify_tar_backup(pg: PgInstall, tar_dir: Path, scratch_dir: Path) -> Verification:
    """Prove pg_basebackup's tars in ``tar_dir`` against their backup_manifest.

    PostgreSQL 18 and later read the tars where they lie (``verify_tars_in_place``); before 18
    pg_verifybackup reads a directory only, so ``tar_dir`` is extracted into ``scratch_dir``/extract,
    verified and removed."""
    if pg.major >= TAR_VERIFY_MAJOR:
        return verify_tars_in_place(pg, tar_dir, scratch_dir)
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
        run_pg_verifybackup(pg, tar_dir / BACKUP_MANIFEST, extract_dir)
        verify_seconds = time.monotonic() - started
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)
    log.info("pg_verifybackup %s verified every file and the WAL range in %.1f s", pg.version, verify_seconds)
    return Verification(
        f"pg_verifybackup {pg.version}", extracted, extract_seconds, verify_seconds, method=EXTRACTED_COPY
    )


def verify_tars_in_place(pg: PgInstall, tar_dir: Path, scratch_dir: Path) -> Verification:
    """PostgreSQL 18+: pg_verifybackup checks every file inside the tars (size and SHA-256) without
    extracting them. It cannot parse WAL inside a tar, so only pg_wal.tar (the WAL of the backup
    window, small beside the data) is extracted and pg_waldump reads it from start to stop: the
    same proof pg_verifybackup gives a directory backup."""
    started = time.monotonic()
    _run_verifier(pg_verifybackup_tar_argv(pg, tar_dir), tar_dir)
    files_seconds = time.monotonic() - started
    pg_manifest = parse_backup_manifest((tar_dir / BACKUP_MANIFEST).read_bytes(), where=str(tar_dir / BACKUP_MANIFEST))
    wal_dir = scratch_dir / "wal"
    wal_tar = tar_dir / WAL_TAR
    if not wal_tar.exists():
        raise BackupVerificationFailed(f"no {WAL_TAR} in {tar_dir}: the backup carries no WAL and cannot be restored")
    try:
        started = time.monotonic()
        wal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with tarfile.open(wal_tar, "r:") as archive:
                archive.extractall(wal_dir, filter=_private_member)
        except (tarfile.TarError, OSError) as exc:
            raise BackupVerificationFailed(f"cannot extract {wal_tar}: {exc}") from None
        extracted = wal_tar.stat().st_size
        extract_seconds = time.monotonic() - started
        wal_seconds = parse_backup_wal(pg, wal_dir, pg_manifest, where=tar_dir)
    finally:
        shutil.rmtree(wal_dir, ignore_errors=True)
    log.info(
        "pg_verifybackup %s verified every file inside the tars in %.1f s (nothing extracted); "
        "pg_waldump read the backup's WAL (%s) in %.1f s",
        pg.version,
        files_seconds,
        human_bytes(extracted),
        wal_seconds,
    )
    return Verification(
        f"pg_verifybackup {pg.version} --format=tar, pg_waldump {pg.version}",
        extracted,
        extract_seconds,
        files_seconds + wal_seconds,
        method=TARS_IN_PLACE,
    )


def read_backup_label(base_tar: Path) -> str:
    """backup_label from inside base.tar (pg_basebackup sends it first, so this reads little)."""
    with tarfile.open(base_tar, "r:") as archive:
        for member in archive:
            if member.name == BACKUP_LABEL and member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    return handle.read().decode("utf-8")
    raise BackupVerificationFailed(f"{base_tar} holds no {BACKUP_LABEL}: not a base backup")
