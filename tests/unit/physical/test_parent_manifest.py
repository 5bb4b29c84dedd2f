"""The parent's backup_manifest on the backup host: kept per run (0600, the newest three), used only
when its bytes hash to the plain sha256 the parent's manifest.json records; with a public key and
no good kept copy, refused in one line (the backup host cannot decrypt what it stored)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import BackupSet
from hms_dr.crypto import EncryptionKey
from hms_dr.encryption_mode import EncryptionMode
from hms_dr.manifest import BackupKind, Manifest, Payload
from hms_dr.physical.incremental import PG_MANIFEST_FORMAT
from hms_dr.physical.parentmanifest import (
    KEPT_MANIFESTS,
    ParentManifestUnavailable,
    fetch_parent_manifest,
    keep_backup_manifest,
    kept_manifest_path,
)

PLAIN = b'{ "PostgreSQL-Backup-Manifest-Version": 2, "Files": [] }\n'
SET_ID = "20261201T030000Z"
PUBLIC = EncryptionKey(EncryptionMode.PUBLIC_KEY, "F" * 40, public_key="-----BEGIN PGP PUBLIC KEY BLOCK-----")


def parent(plain_sha256: str | None = hashlib.sha256(PLAIN).hexdigest()) -> BackupSet:
    payload = Payload("backup_manifest.zst.gpg", 10, "a" * 64, PG_MANIFEST_FORMAT, len(PLAIN), plain_sha256)
    at = datetime(2026, 12, 1, 3, tzinfo=UTC)
    manifest = Manifest(BackupKind.BASE, SET_ID, "c", at, at + timedelta(minutes=5), (payload,), {"base_backup": {}})
    return BackupSet(manifest, f"c/base/{SET_ID}/manifest.json")


def fetch(tmp_path: Path, backup_set: BackupSet) -> Path:
    work = tmp_path / "work"
    work.mkdir(mode=0o700, exist_ok=True)
    store: Any = None  # never reached on these paths: nothing is downloaded
    return fetch_parent_manifest(
        store, "c", backup_set, encryption_key=PUBLIC, staging_dir=tmp_path, workdir=work, gpg_home_dir=tmp_path / "g"
    )


def test_a_kept_copy_is_private_and_only_the_newest_few_stay(tmp_path: Path) -> None:
    source = tmp_path / "backup_manifest"
    source.write_bytes(PLAIN)
    ids = [f"202612{day:02d}T030000Z" for day in range(1, 6)]
    for set_id in ids:
        keep_backup_manifest(tmp_path, set_id, source)
    kept = sorted(p.name for p in (tmp_path / "backup-manifests").iterdir())
    assert kept == [f"{i}.backup_manifest" for i in ids[-KEPT_MANIFESTS:]]
    assert (tmp_path / "backup-manifests").stat().st_mode & 0o777 == 0o700
    assert kept_manifest_path(tmp_path, ids[-1]).stat().st_mode & 0o777 == 0o600


def test_the_kept_copy_serves_when_its_plain_sha256_matches(tmp_path: Path) -> None:
    source = tmp_path / "backup_manifest"
    source.write_bytes(PLAIN)
    keep_backup_manifest(tmp_path, SET_ID, source)
    got = fetch(tmp_path, parent())
    assert got.read_bytes() == PLAIN and got.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("kept", [PLAIN.replace(b"2", b"1"), None])
def test_a_changed_or_missing_kept_copy_with_a_public_key_is_refused_in_one_line(
    tmp_path: Path, kept: bytes | None
) -> None:
    if kept is not None:
        source = tmp_path / "backup_manifest"
        source.write_bytes(kept)
        keep_backup_manifest(tmp_path, SET_ID, source)
    with pytest.raises(ParentManifestUnavailable) as refused:
        fetch(tmp_path, parent())
    assert refused.value.message == (
        f"the backup_manifest of parent set {SET_ID} is not kept on this worker, and with public_key encryption "
        "the backup host cannot decrypt the stored copy"
    )
    assert "backup_type full" in (refused.value.hint or "")
    assert list((tmp_path / "work").iterdir()) == []


def test_without_a_recorded_plain_sha256_even_an_identical_copy_proves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "backup_manifest"
    source.write_bytes(PLAIN)
    keep_backup_manifest(tmp_path, SET_ID, source)
    with pytest.raises(ParentManifestUnavailable):
        fetch(tmp_path, parent(plain_sha256=None))
