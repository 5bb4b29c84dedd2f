"""PostgreSQL's backup_manifest and backup_label, as pg_basebackup 15 (and 18: manifest version 2) writes them."""

from __future__ import annotations

import json

import pytest

from hms_dr.errors import BackupVerificationFailed
from hms_dr.physical.backup_manifest import check_label_matches_manifest, parse_backup_label, parse_backup_manifest
from hms_dr.wal.names import parse_lsn

# Abridged from a real pg_basebackup 15.18 -Ft --manifest-checksums=SHA256 run.
MANIFEST = b"""{ "PostgreSQL-Backup-Manifest-Version": 1,
"Files": [
{ "Path": "backup_label", "Size": 208, "Last-Modified": "2026-11-24 01:32:38 GMT", "Checksum-Algorithm": "SHA256", "Checksum": "1c756dc2e050f366e59ca3b88bafcec409d558ca62548cab77dfa642272ccbaf" },
{ "Path": "tablespace_map", "Size": 0, "Last-Modified": "2026-11-24 01:32:38 GMT", "Checksum-Algorithm": "SHA256", "Checksum": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
{ "Path": "global/pg_control", "Size": 8192, "Last-Modified": "2026-11-24 01:32:38 GMT", "Checksum-Algorithm": "SHA256", "Checksum": "c11a3617dcf3709208d83e5584568bd39073272c6b23ffe0a86feca8141d9a2e" }
],
"WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }
],
"Manifest-Checksum": "6915d61d368bed236811e20ae599b6c10372e4f3c989d3b6136b9d86d947862b"}
"""

LABEL = """START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-24 01:32:38 UTC
LABEL: hms-dr-20261124T013238Z
START TIMELINE: 1
"""


def manifest_with(**changes: object) -> bytes:
    data = json.loads(MANIFEST)
    for key, value in changes.items():
        if value is None:
            del data[key.replace("_", "-")]
        else:
            data[key.replace("_", "-")] = value
    return json.dumps(data).encode()


def test_reads_the_wal_range_and_the_files_of_a_real_manifest() -> None:
    manifest = parse_backup_manifest(MANIFEST, where="tars/backup_manifest")
    assert (manifest.start_lsn, manifest.stop_lsn) == (0x2000028, 0x2000100)
    assert (manifest.start_timeline, manifest.stop_timeline) == (1, 1)
    assert (manifest.file_count, manifest.total_size_bytes, manifest.version) == (3, 208 + 8192, 1)


def test_reads_a_version_2_manifest_as_postgresql_17_and_later_write_it() -> None:
    # Version 2 adds the cluster's System-Identifier after the version; the rest is unchanged.
    raw = MANIFEST.replace(
        b'"PostgreSQL-Backup-Manifest-Version": 1,',
        b'"PostgreSQL-Backup-Manifest-Version": 2,\n"System-Identifier": 7578236101829134862,',
    )
    manifest = parse_backup_manifest(raw, where="tars/backup_manifest")
    assert (manifest.version, manifest.file_count) == (2, 3)
    assert (manifest.start_lsn, manifest.stop_lsn) == (0x2000028, 0x2000100)


def test_a_backup_taken_across_a_timeline_switch_starts_on_the_first_and_stops_on_the_last() -> None:
    # The server lists the newest timeline first.
    ranges = [
        {"Timeline": 2, "Start-LSN": "0/60000A8", "End-LSN": "0/7000100"},
        {"Timeline": 1, "Start-LSN": "0/5000028", "End-LSN": "0/60000A8"},
    ]
    manifest = parse_backup_manifest(manifest_with(WAL_Ranges=ranges), where="m")
    assert (manifest.start_timeline, manifest.start_lsn) == (1, 0x5000028)
    assert (manifest.stop_timeline, manifest.stop_lsn) == (2, 0x7000100)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (manifest_with(PostgreSQL_Backup_Manifest_Version=3), "has version 3"),
        (manifest_with(WAL_Ranges=None), "missing or has a malformed field"),
        (manifest_with(Files=None), "missing or has a malformed field"),
        (manifest_with(WAL_Ranges=[]), "names no WAL range"),
        (manifest_with(WAL_Ranges=[{"Timeline": 1, "Start-LSN": "0/2", "End-LSN": "nowhere"}]), "malformed field"),
        (
            manifest_with(WAL_Ranges=[{"Timeline": 1, "Start-LSN": "0/3000000", "End-LSN": "0/2000000"}]),
            "impossible WAL range",
        ),
    ],
)
def test_a_malformed_manifest_fails_in_one_line_naming_it(raw: bytes, message: str) -> None:
    with pytest.raises(BackupVerificationFailed, match=message) as caught:
        parse_backup_manifest(raw, where="/staging/tars/backup_manifest")
    assert "/staging/tars/backup_manifest" in caught.value.message
    assert "\n" not in caught.value.message


def test_reads_the_start_checkpoint_and_label_of_a_real_backup_label() -> None:
    label = parse_backup_label(LABEL, where="base.tar")
    assert (label.start_lsn, label.checkpoint_lsn, label.start_timeline) == (0x2000028, 0x2000060, 1)
    assert (label.label, label.backup_from, label.start_time_text) == (
        "hms-dr-20261124T013238Z",
        "primary",
        "2026-11-24 01:32:38 UTC",
    )


def test_a_label_without_its_start_location_is_refused() -> None:
    with pytest.raises(BackupVerificationFailed, match=r"backup_label base\.tar"):
        parse_backup_label(LABEL.replace("START WAL LOCATION", "START"), where="base.tar")


def test_the_label_and_the_manifest_must_describe_the_same_backup() -> None:
    manifest = parse_backup_manifest(MANIFEST, where="m")
    check_label_matches_manifest(parse_backup_label(LABEL, where="l"), manifest, where="tars")
    other = parse_backup_label(LABEL.replace("0/2000028", "0/4000028"), where="l")
    with pytest.raises(
        BackupVerificationFailed, match="backup_label starts at 0/4000028 on timeline 1, backup_manifest at 0/2000028"
    ):
        check_label_matches_manifest(other, manifest, where="tars")
    assert parse_lsn("0/4000028") == other.start_lsn
