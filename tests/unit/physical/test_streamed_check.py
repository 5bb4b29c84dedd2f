"""The streamed base backup's pieces without a server: the tar stream reader, the check against
backup_manifest, the staging bound, and the argv and space rules of the streamed method.

The tars here are written by Python's tarfile (ustar, as pg_basebackup writes); the manifests are
built the way PostgreSQL builds them (a checksum line over every byte before it)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hms_dr.errors import BackupVerificationFailed
from hms_dr.pginstalls import PgInstall
from hms_dr.physical.pgbasebackup import pg_basebackup_argv
from hms_dr.physical.preflight import SourceCluster, streamed_space_needed
from hms_dr.physical.streamed import (
    StagingBoundExceeded,
    StagingBudget,
    StreamedBaseBackup,
    StreamedFile,
    check_against_manifest,
    compare_with_manifest,
    manifest_checksum_error,
)
from hms_dr.physical.tarstream import END_OF_ARCHIVE, ChunkReader, TarStream, TarStreamBroken, tar_of_files
from hms_dr.units import human_duration

FILES = {
    "backup_label": b"START WAL LOCATION: 0/2000028\n",
    "PG_VERSION": b"15\n",
    "base/1/1259": bytes(range(256)) * 40,
}


def tar_bytes(members: dict[str, bytes], *, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in {**members, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pg_manifest(files: dict[str, bytes], **fields: Any) -> bytes:
    """A backup_manifest as PostgreSQL writes it: one file per line, the checksum line last."""
    lines = [
        '{ "PostgreSQL-Backup-Manifest-Version": 1,\n',
        '"Files": [\n',
        ",\n".join(
            json.dumps(
                {
                    "Path": name,
                    "Size": len(data),
                    "Checksum-Algorithm": "SHA256",
                    "Checksum": hashlib.sha256(data).hexdigest(),
                }
            )
            for name, data in files.items()
        )
        + "\n",
        '],\n"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n],\n',
    ]
    for name, value in fields.items():
        lines.append(f'"{name}": {json.dumps(value)},\n')
    body = "".join(lines).encode()
    return body + f'"Manifest-Checksum": "{hashlib.sha256(body).hexdigest()}"}}\n'.encode()


def streamed(files: dict[str, bytes], tmp_path: Path) -> StreamedBaseBackup:
    return StreamedBaseBackup(
        io.BytesIO(tar_bytes(files)),
        staging=tmp_path,
        budget=StagingBudget(1 << 20),
        source_ended=lambda whole: None,
        verify_at_end=lambda backup: None,
    )


def test_the_stream_is_handed_on_without_wal_and_manifest_and_every_file_is_measured(tmp_path: Path) -> None:
    wal = {"pg_wal/000000010000000000000002": b"w" * 1000, "pg_wal/archive_status/000000010000000000000002.done": b""}
    source = tar_bytes(FILES, extra={**wal, "backup_manifest": pg_manifest(FILES)})
    backup = StreamedBaseBackup(
        io.BytesIO(source),
        staging=tmp_path,
        budget=StagingBudget(1 << 20),
        source_ended=lambda whole: None,
        verify_at_end=lambda backup: check_against_manifest(backup.manifest_path.read_bytes(), backup),
    )
    handed_on = b"".join(backup.base_tar_chunks())
    assert handed_on.endswith(END_OF_ARCHIVE)
    with tarfile.open(fileobj=io.BytesIO(handed_on)) as archive:
        assert {m.name: archive.extractfile(m).read() for m in archive if m.isfile()} == FILES  # type: ignore[union-attr]
    assert backup.files == {n: StreamedFile(len(d), hashlib.sha256(d).hexdigest()) for n, d in FILES.items()}
    assert backup.wal_files == ["000000010000000000000002"]
    assert (tmp_path / "pg_wal" / "000000010000000000000002").read_bytes() == b"w" * 1000
    assert backup.backup_label == FILES["backup_label"].decode()


def test_a_truncated_stream_is_refused_naming_where_it_broke(tmp_path: Path) -> None:
    whole = tar_bytes(FILES)
    cut = whole[: 512 + len(FILES["backup_label"]) + 700]  # inside PG_VERSION's header or data
    ended: list[bool] = []
    backup = StreamedBaseBackup(
        io.BytesIO(cut),
        staging=tmp_path,
        budget=StagingBudget(1 << 20),
        source_ended=ended.append,
        verify_at_end=lambda backup: None,
    )
    with pytest.raises(TarStreamBroken, match=r"the stream ended .* after 'backup_label'"):
        b"".join(backup.base_tar_chunks())
    assert ended == [False]  # pg_basebackup was asked for its own reason first


def test_a_stream_without_its_end_of_archive_blocks_is_truncated() -> None:
    whole = tar_bytes(FILES)
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        last = archive.getmembers()[-1]
    members_only = whole[: last.offset_data + last.size + (-last.size % 512)]  # every member, no end blocks
    with pytest.raises(TarStreamBroken, match="where a member's header or the end of the archive was due"):
        for _, data in TarStream(io.BytesIO(members_only), what="t").members():
            b"".join(data)
    assert [h.path for h, _ in TarStream(io.BytesIO(whole), what="t").members()] == list(FILES)


def test_a_corrupt_header_and_an_unknown_member_type_are_refused() -> None:
    damaged = bytearray(tar_bytes(FILES))
    damaged[5] ^= 0x01
    with pytest.raises(TarStreamBroken, match="a corrupt member header"):
        list(TarStream(io.BytesIO(bytes(damaged)), what="t").members())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        fifo = tarfile.TarInfo("pg_stat/fifo")
        fifo.type = tarfile.FIFOTYPE
        archive.addfile(fifo)
    with pytest.raises(TarStreamBroken, match="which pg_basebackup never writes"):
        list(TarStream(io.BytesIO(buffer.getvalue()), what="t").members())


def test_the_manifest_checksum_covers_every_byte_before_its_line() -> None:
    raw = pg_manifest(FILES)
    assert manifest_checksum_error(raw) is None
    tampered = raw.replace(b'"Timeline": 1', b'"Timeline": 2')
    assert "checksum is" in str(manifest_checksum_error(tampered))
    assert manifest_checksum_error(raw.rstrip(b"\n")) == "backup_manifest does not end with its checksum line"


def seen(files: dict[str, bytes]) -> dict[str, StreamedFile]:
    return {n: StreamedFile(len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items()}


def test_missing_extra_resized_and_changed_files_are_each_named() -> None:
    manifest = json.loads(pg_manifest(FILES))
    assert compare_with_manifest(manifest, seen(FILES)) == []
    changed = {**FILES, "base/1/1259": b"x" * len(FILES["base/1/1259"]), "PG_VERSION": b"15\n\n"}
    del changed["backup_label"]
    changed["base/1/9999"] = b"new"
    assert compare_with_manifest(manifest, seen(changed)) == [
        '"backup_label" is present in the manifest but not in the backup',
        '"PG_VERSION" has size 4 in the backup but size 3 in the manifest',
        'checksum mismatch for file "base/1/1259"',
        '"base/1/9999" is present in the backup but not in the manifest',
    ]


def test_wal_entries_of_the_manifest_are_left_to_pg_waldump_and_encoded_paths_are_read() -> None:
    manifest = json.loads(pg_manifest({**FILES, "pg_wal/archive_status/000000010000000000000002.done": b""}))
    for entry in manifest["Files"]:
        if entry["Path"] == "PG_VERSION":
            entry["Encoded-Path"] = b"PG_VERSION".hex()
            del entry["Path"]
    assert compare_with_manifest(manifest, seen(FILES)) == []


def test_a_mismatch_fails_in_one_line_counting_the_rest(tmp_path: Path) -> None:
    backup = streamed(FILES, tmp_path)
    backup.files.update(seen({**FILES, "PG_VERSION": b"16\n", "base/1/1": b"a", "base/1/2": b"b"}))
    with pytest.raises(BackupVerificationFailed) as caught:
        check_against_manifest(pg_manifest(FILES), backup)
    assert caught.value.message == (
        "the streamed base backup does not match its backup_manifest: "
        'checksum mismatch for file "PG_VERSION" (and 2 more, see the log)'
    )


def test_a_system_identifier_other_than_the_control_files_is_refused(tmp_path: Path) -> None:
    backup = streamed(FILES, tmp_path)
    backup.files.update(seen(FILES))
    backup.control_file_head = (7714853088714232969).to_bytes(8, "little")
    check_against_manifest(pg_manifest(FILES, **{"System-Identifier": 7714853088714232969}), backup)
    with pytest.raises(BackupVerificationFailed, match="global/pg_control has system identifier 7714853088714232969"):
        check_against_manifest(pg_manifest(FILES, **{"System-Identifier": 1}), backup)


def test_the_staging_bound_counts_everything_but_wal() -> None:
    budget = StagingBudget(1000)
    budget.charge(10_000, what="WAL file 1", wal=True)
    budget.charge(900, what="backup_manifest")
    assert (budget.wal_bytes, budget.other_bytes, budget.staged_bytes) == (10_000, 900, 10_900)
    with pytest.raises(StagingBoundExceeded, match=r"would stage 1\.1 KiB besides its WAL \(backup_manifest\)"):
        budget.charge(200, what="backup_manifest")


def test_the_wal_tar_built_on_the_way_holds_the_files_as_written(tmp_path: Path) -> None:
    files = []
    for index, size in enumerate((0, 511, 512, 70_000)):
        path = tmp_path / f"{index:024X}"
        path.write_bytes(bytes([index]) * size)
        files.append((path.name, path))
    reader = ChunkReader(tar_of_files(files))
    chunks: Iterator[bytes] = iter(lambda: reader.read(1000), b"")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        assert [(m.name, m.size, m.mode) for m in archive] == [(n, p.stat().st_size, 0o600) for n, p in files]
        assert archive.extractfile(files[3][0]).read() == bytes([3]) * 70_000  # type: ignore[union-attr]


def test_the_streamed_method_writes_one_tar_to_stdout_with_the_wal_fetched(pg15: PgInstall) -> None:
    argv = pg_basebackup_argv(pg15, None, label="hms-dr-x")
    assert "--pgdata=-" in argv and "--wal-method=fetch" in argv and "--manifest-checksums=SHA256" in argv
    assert "--wal-method=stream" in pg_basebackup_argv(pg15, Path("/s/tars"), label="hms-dr-x")


def test_streamed_staging_needs_the_bound_and_max_wal_size_not_the_cluster() -> None:
    source = SourceCluster(
        150018, "15.18", False, "1", True, 16 << 20, "replica", 10, "hms_replica", True, False, 1 << 40, 0,
        max_wal_size_bytes=1 << 30,
    )  # fmt: skip
    assert streamed_space_needed(256 << 20, source) == (256 << 20) + (1 << 30)


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0 s"), (42, "42 s"), (754, "12 min 34 s"), (9000, "2 h 30 min"), (-3, "0 s")]
)
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
