"""The pure parts of directory-format dumps: payload names and the manifest's archive_format, the
content digest of a directory dump's files (the program as the engine runs it), the staging room
preflight asks for and check-policy's line on the choice, and the ETA of progress lines."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hms_dr.errors import BackupVerificationFailed, ManifestInvalid, PreflightFailed
from hms_dr.logical.archive_digest import DirectoryToc, LargeObjectsDigest
from hms_dr.logical.content import METHOD, digest_argv, digest_env, directory_content
from hms_dr.manifest import (
    BackupKind,
    Manifest,
    archive_format,
    directory_member,
    directory_payload_name,
)
from hms_dr.policy import DEFAULT_POLICY_PATH, DumpFormat, load_policy
from hms_dr.policy_check import Verdict, dump_format_finding
from hms_dr.preflight import MIB, SpaceCheck, check_space, staging_needed_bytes

# The rows 1, 1 and 2 under the method (tests/integration/test_archive_digest.py fixes the same value
# from a custom archive): a directory dump's table file must digest to it too.
KNOWN_DUPLICATES_DIGEST = {"rows": 3, "digest": "55a01d49445c56f796c9a5640954f4fc"}


def manifest(body: dict) -> Manifest:
    moment = datetime(2026, 12, 2, tzinfo=UTC)
    return Manifest(BackupKind.LOGICAL, "20261202T000000Z", "c", moment, moment, (), body)


def test_a_directory_payload_name_gives_back_its_file() -> None:
    for member in ("toc.dat", "4012.dat", "blob_16385.dat", "blobs_3021.toc"):
        for suffix in (".zst.gpg", ".gz.gpg", ".gpg"):
            assert directory_member(directory_payload_name("dump", member, suffix)) == member
    assert directory_payload_name("dump", "toc.dat", ".zst.gpg") == "dump.dir.toc.dat.zst.gpg"


@pytest.mark.parametrize("name", ["dump.pgdump.zst.gpg", "dump.dir..gpg", "dump.dir....gpg", "dump.dir..zst.gpg"])
def test_a_name_that_is_no_directory_file_is_refused(name: str) -> None:
    with pytest.raises(ManifestInvalid):
        directory_member(name)


def test_a_manifest_without_archive_format_is_a_custom_set() -> None:
    assert archive_format(manifest({})) == "custom"
    assert archive_format(manifest({"archive_format": "directory"})) == "directory"
    with pytest.raises(ManifestInvalid, match="archive_format 'tar'"):
        archive_format(manifest({"archive_format": "tar"}))


def run_members(frames: list[tuple[str, bytes]]) -> dict:
    stream = b"".join(f"{name}\t{len(data)}\n".encode() + data for name, data in frames)
    done = subprocess.run(
        [*digest_argv(), "--members"], input=stream, env=digest_env(), capture_output=True, timeout=60, check=True
    )
    output = json.loads(done.stdout)
    assert output["method"] == METHOD
    return output["members"]


def test_a_table_file_digests_as_its_rows_do_in_a_custom_archive_with_or_without_the_end_mark() -> None:
    members = run_members(
        [("toc.dat", b"PGDMP..."), ("3001.dat", b"1\n1\n2\n\\.\n\n"), ("3002.dat", b"2\n1\n1\n"), ("3003.dat", b"")]
    )
    assert members["3001.dat"] == KNOWN_DUPLICATES_DIGEST == members["3002.dat"]  # pg_dump 18 writes no \.
    assert members["3003.dat"] == {"rows": 0, "digest": "0" * 32}
    assert members["toc.dat"] == {"skipped": 8}


def test_a_large_object_file_is_hashed_with_its_oid_as_the_archive_reader_hashes_it() -> None:
    members = run_members([("blob_16385.dat", b"\x00\xff\x00\xff")])
    assert members["blob_16385.dat"] == {
        "oid": 16385,
        "hash": hashlib.blake2b(b"16385:\x00\xff\x00\xff", digest_size=16).hexdigest(),
    }


def test_a_frame_cut_short_is_an_error_not_a_digest() -> None:
    done = subprocess.run(
        [*digest_argv(), "--members"], input=b"3001.dat\t100\n1\n2\n", env=digest_env(), capture_output=True, timeout=60
    )
    assert done.returncode == 1 and b"ends early" in done.stderr


def test_directory_content_maps_files_to_tables_and_adds_up_large_objects() -> None:
    toc = DirectoryToc(
        "UTF8", {"3001.dat": ("public", "t"), "3002.dat": ("Audit Trail", "Order Details")}, ("blobs.toc",)
    )
    hashes = {16385: "11" * 16, 16386: "22" * 16}
    members = {
        "3001.dat": KNOWN_DUPLICATES_DIGEST,
        "3002.dat": {"rows": 0, "digest": "0" * 32},
        **{f"blob_{oid}.dat": {"oid": oid, "hash": value} for oid, value in hashes.items()},
    }
    content = directory_content(toc, members, {"blobs.toc": b"16385 blob_16385.dat\n16386 blob_16386.dat\n"}, "dump")
    assert content.tables == {
        ("public", "t"): KNOWN_DUPLICATES_DIGEST,
        ("Audit Trail", "Order Details"): members["3002.dat"],
    }
    expected = LargeObjectsDigest()
    for value in hashes.values():
        expected.add(bytes.fromhex(value))
    assert content.large_objects == expected.record() and content.encoding == "UTF8"
    with pytest.raises(
        BackupVerificationFailed, match="2 file\\(s\\) the dump's table of contents names were not digested"
    ):
        directory_content(toc, {"3001.dat": KNOWN_DUPLICATES_DIGEST}, {"blobs.toc": b"16385 blob_16385.dat\n"}, "dump")


def test_a_directory_dump_needs_room_for_the_database_in_staging_and_is_refused_in_one_line() -> None:
    size = 10 * 1024 * MIB
    assert staging_needed_bytes(DumpFormat.CUSTOM, size) == 0
    assert staging_needed_bytes(DumpFormat.DIRECTORY, size) == size
    needed = 512 * MIB + staging_needed_bytes(DumpFormat.DIRECTORY, size)
    with pytest.raises(PreflightFailed) as caught:
        check_space([SpaceCheck("staging directory /srv/staging", 4096 * MIB, needed)])
    assert (
        caught.value.message
        == "not enough free space in staging directory /srv/staging: 4,096 MiB free, 10,752 MiB needed"
    )
    assert "directory-format dump" in (caught.value.hint or "")


def test_check_policy_reports_the_choice_and_warns_when_staging_has_no_room(tmp_path: Path) -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    policy = dataclasses.replace(policy, staging=dataclasses.replace(policy.staging, dir=tmp_path / "staging"))
    small = dump_format_finding(policy, 100 * MIB)
    assert small.verdict is Verdict.OK and small.line().startswith("OK") and "custom (pg_dump -Fc)" in small.line()
    huge = dump_format_finding(policy, 1 << 60)  # more than any disk here
    assert huge.verdict is Verdict.WARN
    assert (
        "directory (pg_dump -Fd -j 2, staged on the worker)" in huge.line() and "MiB free on this host" in huge.line()
    )
