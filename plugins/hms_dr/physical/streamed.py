"""The streamed base backup: pg_basebackup's tar stream proven on its way into the store.

``pg_basebackup -D - -Ft -X fetch`` writes one tar to its stdout: the data directory's files, then
the WAL of the backup window under ``pg_wal/``, then ``backup_manifest`` (pg_basebackup injects it
as the last member). ``StreamedBaseBackup.base_tar_chunks`` reads that stream once and hands on
base.tar as the staged method stores it (everything but the WAL files and the manifest), while

- every file's size and SHA-256 are taken as its bytes pass (``StreamedFile``);
- the WAL files go to a small staging directory (they become pg_wal.tar, and pg_waldump reads them);
- backup_manifest goes to staging (kilobytes per GB of cluster).

At the end of the stream, before the end-of-archive blocks are passed on (so before the upload of
base.tar can complete), ``check_against_manifest`` proves what pg_verifybackup proves:

| pg_verifybackup checks                          | the streamed check                                     |
| ----------------------------------------------- | ------------------------------------------------------ |
| the manifest's own checksum                     | the same (SHA-256 of the manifest up to its last line) |
| every manifest file present, none extra         | the same, over the files of the stream                 |
| each file's size and checksum                   | the same (SHA-256, computed as the bytes pass)         |
| the system identifier (v2 manifests, 17+)       | the same, from global/pg_control in the stream         |
| the WAL range parses (pg_waldump start to end)  | the same pg_waldump run, on the staged WAL files       |
| skips postgresql.auto.conf and *.signal files   | checks them too (hms-dr never runs pg_basebackup -R)   |
| skips pg_wal/ (WAL is proven by pg_waldump)     | the same                                               |

Nothing of the cluster but its WAL window ever lies on the worker's disk: ``StagingBudget`` counts
what is staged and fails the backup once anything but WAL passes its bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hms_dr.errors import BackupVerificationFailed, HmsDrError
from hms_dr.physical.tarstream import END_OF_ARCHIVE, MemberKind, TarStream
from hms_dr.physical.verifybackup import BACKUP_LABEL, BACKUP_MANIFEST
from hms_dr.units import human_bytes

log = logging.getLogger(__name__)

CONTROL_FILE = "global/pg_control"
WAL_PREFIX = "pg_wal/"
WAL_STATUS_PREFIX = "pg_wal/archive_status/"
# What a WAL directory of a backup may hold: segments and timeline history files.
_WAL_NAME = re.compile(r"^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$")


class StagingBoundExceeded(HmsDrError):
    """A streamed base backup staged more than its bound on the worker's disk."""


class StagingBudget:
    """What a streamed backup has written to staging: WAL apart, everything else under ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.wal_bytes = 0
        self.other_bytes = 0

    def charge(self, size: int, *, what: str, wal: bool = False) -> None:
        if wal:
            self.wal_bytes += size
            return
        self.other_bytes += size
        if self.other_bytes > self.limit_bytes:
            raise StagingBoundExceeded(
                f"the streamed base backup would stage {human_bytes(self.other_bytes)} besides its WAL "
                f"({what}), over base_backup.staging_limit_mb ({human_bytes(self.limit_bytes)})",
                hint="raise base_backup.staging_limit_mb in the policy; nothing was stored",
            )

    @property
    def staged_bytes(self) -> int:
        return self.wal_bytes + self.other_bytes


@dataclass(frozen=True)
class StreamedFile:
    """A file of the data directory as it passed in the stream."""

    size: int
    sha256: str


class StreamedBaseBackup:
    """One pg_basebackup stream: base.tar handed on, every file measured, WAL and manifest staged.

    ``source_ended(whole)`` is called once the stream has ended, before anything is judged: it
    waits for pg_basebackup (ends it when the stream broke while it still ran) and raises
    pg_basebackup's own failure, which says more than "truncated". ``verify_at_end`` then proves
    the whole stream before its end-of-archive blocks are handed on.
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        staging: Path,
        budget: StagingBudget,
        source_ended: Callable[[bool], None],
        verify_at_end: Callable[[StreamedBaseBackup], None],
    ) -> None:
        self._stream = TarStream(source, what="pg_basebackup's tar stream")
        self._staging = staging
        self._budget = budget
        self._source_ended = source_ended
        self._verify_at_end = verify_at_end
        self.files: dict[str, StreamedFile] = {}
        self.wal_dir = staging / "pg_wal"
        self.wal_files: list[str] = []
        self.manifest_path = staging / BACKUP_MANIFEST
        self.backup_label = ""
        self.control_file_head = b""
        self.passed_on_bytes = 0

    @property
    def bytes_read(self) -> int:
        return self._stream.bytes_read

    def base_tar_chunks(self) -> Iterator[bytes]:
        """base.tar as chunks; raises (so the upload is abandoned) unless the whole stream proves out."""
        self.wal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        manifest_seen = False
        try:
            for header, data in self._stream.members():
                if header.path == BACKUP_MANIFEST and header.kind is MemberKind.FILE:
                    self._stage(self.manifest_path, data, what=BACKUP_MANIFEST, wal=False)
                    manifest_seen = True
                elif header.path.startswith(WAL_STATUS_PREFIX) and header.kind is MemberKind.FILE:
                    continue  # the server's .done markers: a restore starts without them
                elif header.path.startswith(WAL_PREFIX) and header.kind is MemberKind.FILE:
                    self._stage_wal(header.path.removeprefix(WAL_PREFIX), data)
                else:
                    yield header.raw
                    self.passed_on_bytes += len(header.raw)
                    if header.kind is MemberKind.FILE:
                        yield from self._pass_file(header.path, data)
                        yield header.padding
                        self.passed_on_bytes += len(header.padding)
        except GeneratorExit:  # the upload gave up on the stream: end pg_basebackup, nothing to report
            with contextlib.suppress(Exception):
                self._source_ended(False)
            raise
        except BaseException:
            self._source_ended(False)  # pg_basebackup's own error first, when it has one
            raise
        self._source_ended(True)
        if not manifest_seen:
            raise BackupVerificationFailed(
                "pg_basebackup's tar stream holds no backup_manifest: the backup cannot be verified",
                hint="the backup was not stored; pg_basebackup must not run with --no-manifest",
            )
        self._verify_at_end(self)
        yield END_OF_ARCHIVE
        self.passed_on_bytes += len(END_OF_ARCHIVE)

    def _pass_file(self, path: str, data: Iterator[bytes]) -> Iterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        keep = path in (BACKUP_LABEL, CONTROL_FILE)
        kept = []
        for chunk in data:
            digest.update(chunk)
            size += len(chunk)
            if keep:
                kept.append(chunk)
            self.passed_on_bytes += len(chunk)
            yield chunk
        self.files[path] = StreamedFile(size, digest.hexdigest())
        if path == BACKUP_LABEL:
            self.backup_label = b"".join(kept).decode("utf-8", "replace")
        elif path == CONTROL_FILE:
            self.control_file_head = b"".join(kept)[:8]

    def _stage_wal(self, name: str, data: Iterator[bytes]) -> None:
        if not _WAL_NAME.match(name):
            raise BackupVerificationFailed(
                f"pg_basebackup's tar stream holds {WAL_PREFIX}{name!r}, not a WAL file name"
            )
        self._stage(self.wal_dir / name, data, what=f"WAL file {name}", wal=True)
        self.wal_files.append(name)

    def _stage(self, path: Path, data: Iterator[bytes], *, what: str, wal: bool) -> None:
        with path.open("xb") as target:
            path.chmod(0o600)
            for chunk in data:
                self._budget.charge(len(chunk), what=what, wal=wal)
                target.write(chunk)


def manifest_checksum_error(raw: bytes) -> str | None:
    """Why the manifest's own checksum fails, or None: its last line carries the SHA-256 of every
    byte before that line (PostgreSQL's rule, which pg_verifybackup applies)."""
    if not raw.endswith(b"\n") or raw.count(b"\n") < 2:
        return "backup_manifest does not end with its checksum line"
    covered = raw[: raw.rindex(b"\n", 0, len(raw) - 1) + 1]
    try:
        recorded = json.loads(raw)["Manifest-Checksum"]
    except (ValueError, KeyError, TypeError):
        return "backup_manifest has no Manifest-Checksum"
    actual = hashlib.sha256(covered).hexdigest()
    if actual != recorded:
        return f"backup_manifest's checksum is {actual}, it records {recorded}"
    return None


def manifest_path(entry: Mapping[str, Any]) -> str:
    """A manifest file entry's path: plain, or hex-encoded when it is not valid UTF-8."""
    if "Path" in entry:
        return str(entry["Path"])
    return bytes.fromhex(entry["Encoded-Path"]).decode("utf-8", "surrogateescape")


def compare_with_manifest(manifest: Mapping[str, Any], files: Mapping[str, StreamedFile]) -> list[str]:
    """Every difference between the manifest's files and those of the stream, as pg_verifybackup words them."""
    errors = []
    # Like pg_verifybackup, nothing under pg_wal/ is compared (with -X fetch the manifest lists the
    # .done markers of the backup's WAL): the WAL is proven by pg_waldump instead.
    listed: dict[str, Mapping[str, Any]] = {
        path: entry for entry in manifest["Files"] if not (path := manifest_path(entry)).startswith(WAL_PREFIX)
    }
    for path, entry in listed.items():
        seen = files.get(path)
        if seen is None:
            errors.append(f'"{path}" is present in the manifest but not in the backup')
            continue
        if int(entry["Size"]) != seen.size:
            errors.append(f'"{path}" has size {seen.size} in the backup but size {entry["Size"]} in the manifest')
            continue
        algorithm = entry.get("Checksum-Algorithm")
        if algorithm != "SHA256":
            errors.append(f'"{path}" has checksum algorithm {algorithm!r}; the streamed check needs SHA256')
        elif entry.get("Checksum") != seen.sha256:
            errors.append(f'checksum mismatch for file "{path}"')
    errors.extend(f'"{path}" is present in the backup but not in the manifest' for path in files if path not in listed)
    return errors


def system_identifier_error(manifest: Mapping[str, Any], control_file_head: bytes) -> str | None:
    """Version 2 manifests (17+) name the cluster; its control file in the stream must agree."""
    recorded = manifest.get("System-Identifier")
    if recorded is None:
        return None
    if len(control_file_head) < 8:
        return f"the stream holds no {CONTROL_FILE} to compare the manifest's system identifier with"
    actual = int.from_bytes(control_file_head[:8], "little")
    if actual != int(recorded):
        return f"{CONTROL_FILE} has system identifier {actual}, the manifest {recorded}"
    return None


def check_against_manifest(raw_manifest: bytes, backup: StreamedBaseBackup) -> dict[str, Any]:
    """The manifest (parsed) once it and every file of the stream agree; else BackupVerificationFailed
    with the first difference and how many more there are."""
    errors = []
    checksum_error = manifest_checksum_error(raw_manifest)
    if checksum_error:
        errors.append(checksum_error)
    try:
        manifest = json.loads(raw_manifest)
        errors.extend(compare_with_manifest(manifest, backup.files))
        identifier_error = system_identifier_error(manifest, backup.control_file_head)
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupVerificationFailed(f"backup_manifest from the stream is malformed: {exc}") from None
    if identifier_error:
        errors.append(identifier_error)
    if errors:
        for error in errors:
            log.error("streamed verification: %s", error)
        more = f" (and {len(errors) - 1} more, see the log)" if len(errors) > 1 else ""
        raise BackupVerificationFailed(
            f"the streamed base backup does not match its backup_manifest: {errors[0]}{more}",
            hint="nothing was published; rerun the backup, and check the server and the network if it fails again",
        )
    return dict(manifest)
