"""The pure parts of a base backup: what runs, what is refused before it runs, and how failures read."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hms_dr.errors import (
    BackupVerificationFailed,
    PreflightFailed,
    ReplicationNotPermitted,
    StagingSpaceShort,
    ToolFailed,
)
from hms_dr.pginstalls import PgInstall
from hms_dr.physical.basebackup import label_for
from hms_dr.physical.pgbasebackup import explain_pg_basebackup_failure, pg_basebackup_argv
from hms_dr.physical.preflight import SourceCluster, check_staging_space, judge_source, staging_space_needed
from hms_dr.physical.staging import staged_files
from hms_dr.physical.verifybackup import extract_destination, pg_verifybackup_argv, read_verify_errors
from hms_dr.progress import ProgressLog

MIB = 1 << 20
SOURCE = SourceCluster(
    server_version_num=150018,
    server_version="15.18",
    in_recovery=False,
    system_identifier="7311",
    data_checksums=True,
    wal_segment_size_bytes=16 * MIB,
    wal_level="replica",
    max_wal_senders=4,
    role_name="hms_replica",
    can_replicate=True,
    is_superuser=False,
    cluster_size_bytes=1200 * MIB,
    databases_not_measured=0,
)


def test_pg_basebackup_takes_tars_with_streamed_wal_and_a_sha256_manifest(pg15: PgInstall) -> None:
    argv = pg_basebackup_argv(pg15, Path("/staging/base-x/tars"), label=label_for("20261124T030000Z"))
    assert argv[0].endswith("pg_basebackup")
    for option in (
        "--format=tar",
        "--wal-method=stream",
        "--manifest-checksums=SHA256",
        "--checkpoint=fast",
        "--no-password",
    ):
        assert option in argv
    assert "--pgdata=/staging/base-x/tars" in argv and "--label=hms-dr-20261124T030000Z" in argv
    assert not any(a.startswith(("--max-rate", "--compress", "-Z", "--dbname", "-d")) for a in argv)


def test_the_connection_and_its_password_never_reach_argv(pg15: PgInstall) -> None:
    argv = pg_basebackup_argv(pg15, Path("/s"), label="hms-dr-x", max_rate_kib_s=32)
    assert "--max-rate=32k" in argv
    assert not any("password=" in a.lower() or a.startswith(("-h", "-U", "--host", "--username")) for a in argv)


def test_pg_verifybackup_reads_the_manifest_beside_the_tars(pg15: PgInstall) -> None:
    argv = pg_verifybackup_argv(pg15, Path("/s/tars/backup_manifest"), Path("/s/extract"))
    assert argv[0].endswith("pg_verifybackup")
    assert argv[1:] == ["--quiet", "--manifest-path=/s/tars/backup_manifest", "/s/extract"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"can_replicate": False}, "role hms_replica on db:5432 lacks the REPLICATION attribute"),
        ({"wal_level": "minimal"}, "wal_level=minimal"),
        ({"max_wal_senders": 1}, "max_wal_senders=1"),
    ],
)
def test_a_source_pg_basebackup_cannot_copy_is_refused_in_one_line(change: dict, message: str) -> None:
    with pytest.raises(ReplicationNotPermitted, match=message) as caught:
        judge_source(replace(SOURCE, **change), where="db:5432")
    assert "\n" not in caught.value.message and caught.value.hint


def test_a_superuser_may_replicate_without_the_attribute() -> None:
    judge_source(replace(SOURCE, can_replicate=False, is_superuser=True), where="db:5432")


def test_staging_must_hold_the_tars_the_extracted_copy_and_the_wal_of_the_run() -> None:
    assert staging_space_needed(1000 * MIB, 2.2, 16 * MIB) == 2200 * MIB + 64 * MIB


def test_too_little_staging_space_is_refused_naming_the_directory_and_the_sizes() -> None:
    with pytest.raises(StagingSpaceShort) as caught:
        check_staging_space(
            Path("/staging"), free_bytes=900 * MIB, needed_bytes=2264 * MIB, cluster_size_bytes=1000 * MIB
        )
    assert caught.value.message == (
        "not enough free space in base backup staging /staging: 900.0 MiB free, 2.2 GiB needed for a cluster of 1000.0 MiB"
    )
    assert isinstance(caught.value, PreflightFailed) and "base_backup.staging_dir" in (caught.value.hint or "")
    check_staging_space(Path("/staging"), free_bytes=2264 * MIB, needed_bytes=2264 * MIB, cluster_size_bytes=1000 * MIB)


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        (
            'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "hms_replica"',
            "password",
        ),
        (
            'FATAL:  no pg_hba.conf entry for replication connection from host "10.0.0.5", user "hms_replica"',
            "pg_hba.conf",
        ),
        ("FATAL:  number of requested standby connections exceeds max_wal_senders (currently 1)", "max_wal_senders"),
        ("could not read COPY data: server closed the connection unexpectedly", "interrupted"),
        ('could not create directory "/s": No space left on device', "task log"),
    ],
)
def test_a_pg_basebackup_failure_keeps_its_line_and_gains_a_hint(line: str, hint: str) -> None:
    explained = explain_pg_basebackup_failure(ToolFailed("pg_basebackup", 1, f"error: {line}"), "db:5432")
    assert explained.message == f"pg_basebackup exited 1: error: {line}"
    assert hint in (explained.hint or "")


def test_verify_errors_are_read_in_the_order_pg_verifybackup_prints_them() -> None:
    stderr = (
        'pg_verifybackup: error: "PG_VERSION" has size 5 on disk but size 3 in the manifest\n'
        'pg_verifybackup: error: "base/1/1259" has size 100 on disk but size 114688 in the manifest\n'
        "pg_waldump: error: could not find any WAL file\n"
        "pg_verifybackup: error: WAL parsing failed for timeline 1\n"
    )
    assert read_verify_errors(stderr) == [
        '"PG_VERSION" has size 5 on disk but size 3 in the manifest',
        '"base/1/1259" has size 100 on disk but size 114688 in the manifest',
        "pg_waldump: error: could not find any WAL file",
        "WAL parsing failed for timeline 1",
    ]


@pytest.mark.parametrize(
    ("tar_name", "relative"), [("base.tar", "."), ("pg_wal.tar", "pg_wal"), ("16394.tar", "pg_tblspc/16394")]
)
def test_each_tar_is_extracted_where_it_belongs_in_a_data_directory(tar_name: str, relative: str) -> None:
    assert extract_destination(tar_name, Path("/x")) == Path("/x") / relative


@pytest.mark.parametrize("tar_name", ["../etc.tar", "base.tar.gz", "notes.txt", "16394"])
def test_other_files_in_the_output_are_refused(tar_name: str) -> None:
    with pytest.raises(BackupVerificationFailed, match="unexpected file"):
        extract_destination(tar_name, Path("/x"))


def test_pg_basebackups_output_becomes_named_payloads(tmp_path: Path) -> None:
    for name in ("base.tar", "pg_wal.tar", "backup_manifest", "16394.tar"):
        (tmp_path / name).write_bytes(b"x")
    assert [(f.path.name, f.payload_name, f.format) for f in staged_files(tmp_path)] == [
        ("16394.tar", "16394.tar.zst.gpg", "pg_basebackup-tablespace-tar"),
        ("backup_manifest", "backup_manifest.zst.gpg", "pg_backup_manifest"),
        ("base.tar", "base.tar.zst.gpg", "pg_basebackup-base-tar"),
        ("pg_wal.tar", "pg_wal.tar.zst.gpg", "pg_basebackup-wal-tar"),
    ]


def test_output_without_its_manifest_or_with_a_stray_file_is_refused(tmp_path: Path) -> None:
    for name in ("base.tar", "pg_wal.tar"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(BackupVerificationFailed, match="lacks backup_manifest"):
        staged_files(tmp_path)
    (tmp_path / "backup_manifest.tmp").write_bytes(b"x")
    with pytest.raises(BackupVerificationFailed, match=r"unexpected file 'backup_manifest\.tmp'"):
        staged_files(tmp_path)


def test_a_long_step_logs_bytes_share_and_rate(caplog: pytest.LogCaptureFixture) -> None:
    done = {"bytes": 0}
    with caplog.at_level(logging.INFO, logger="hms_dr.progress"):
        with ProgressLog("pg_basebackup", lambda: done["bytes"], expected_bytes=400 * MIB, every_s=0.05) as progress:
            done["bytes"] = 100 * MIB
            time.sleep(0.3)
    assert "pg_basebackup: 100.0 MiB of ~400.0 MiB (25%) after" in progress.line()
    assert any("pg_basebackup: 100.0 MiB of ~400.0 MiB (25%)" in r.getMessage() for r in caplog.records)


def test_the_eta_is_the_rest_at_the_rate_so_far_and_says_when_the_estimate_is_passed() -> None:
    done = {"bytes": 100 * MIB}
    progress = ProgressLog("storing base.tar", lambda: done["bytes"], expected_bytes=400 * MIB)
    progress.started = time.monotonic() - 60  # a quarter in one minute: three more to go
    assert progress.line().endswith(", ETA 3 min 0 s")
    done["bytes"] = 500 * MIB
    assert progress.line().endswith(", past the estimate, finishing")
    assert "ETA" not in ProgressLog("zstd", lambda: 1).line()  # no total known: no ETA


def test_a_killed_pg_basebackup_is_reported_by_its_signal_not_its_last_progress_line() -> None:
    killed = ToolFailed("pg_basebackup", -9, "starting background WAL receiver")
    explained = explain_pg_basebackup_failure(killed, "db:5432")
    assert explained.message == "pg_basebackup was killed: SIGKILL"
    assert "interrupted" in (explained.hint or "")
