"""The daily DAG writing to a file:// store (a NAS mount) with a symmetric passphrase and gzip:
private file modes, stored bytes that match the manifest, no trace of the passphrase anywhere,
a dump that decrypts with the passphrase and restores to exactly the baselines, and a wrong
passphrase that fails clearly before anything is restored."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from restoring import drop_database, fetch_plain, observed_baselines, restore_into_new_database

from hms_dr.baseline import diff_baselines
from hms_dr.catalog import find_set, key_for
from hms_dr.crypto import DecryptionKey
from hms_dr.errors import DecryptionFailed
from hms_dr.manifest import MANIFEST_NAME, BackupKind
from hms_dr.pginstalls import newest_install
from hms_dr.policy import EncryptionMode
from hms_dr.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_daily_logical_backup"
CLUSTER = "hms-primary"
KINDS = (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA)
PASSPHRASE = secrets.token_hex(16)  # 32 characters, new for every test session


@pytest.fixture(scope="module")
def store_root(sandbox: Any) -> Path:
    # Under the sandbox's state directory: the file driver refuses a root that does not exist.
    root = Path(sandbox.state_dir) / "file-stores" / f"nas-{uuid.uuid4().hex[:8]}"
    root.parent.mkdir(exist_ok=True)
    root.mkdir(mode=0o700)
    return root


@pytest.fixture(scope="module")
def file_run(dag_runner: Any, store_root: Path) -> Any:
    outcome = dag_runner.run(
        DAG_ID,
        policy={
            "store.primary_url": store_root.as_uri(),
            "encryption.mode": "symmetric",
            "compression.method": "gzip",
            "compression.level": 6,
        },
        env={"AIRFLOW_CONN_HMS_BACKUP_ENCRYPTION": json.dumps({"conn_type": "generic", "password": PASSPHRASE})},
        name="file-store-symmetric-gzip",
    )
    assert outcome.state == "success", outcome.output[-6000:]
    return outcome


@pytest.fixture(scope="module")
def file_store(file_run: Any, store_root: Path) -> Any:
    return open_store(store_root.as_uri())


@pytest.fixture(scope="module")
def newest_set(file_store: Any) -> Any:
    return find_set(file_store, CLUSTER, BackupKind.LOGICAL, "latest")


def passphrase_key(passphrase: str) -> DecryptionKey:
    return DecryptionKey(EncryptionMode.SYMMETRIC, passphrase=passphrase)


def test_every_task_succeeded_and_the_store_holds_exactly_one_complete_set_of_each_kind(
    file_run: Any, newest_set: Any, store_root: Path
) -> None:
    assert set(file_run.task_states.values()) == {"success"}
    assert len(file_run.task_states) == 5
    set_id = newest_set.backup_set_id
    files = sorted(str(p.relative_to(store_root)) for p in store_root.rglob("*") if not p.is_dir())
    assert files == sorted(
        [
            key_for(CLUSTER, BackupKind.LOGICAL, set_id, "dump.pgdump.gpg"),
            key_for(CLUSTER, BackupKind.LOGICAL, set_id, MANIFEST_NAME),
            key_for(CLUSTER, BackupKind.SCHEMA, set_id, "schema.sql.gz.gpg"),
            key_for(CLUSTER, BackupKind.SCHEMA, set_id, MANIFEST_NAME),
            key_for(CLUSTER, BackupKind.DATA, set_id, "data.pgdump.gpg"),
            key_for(CLUSTER, BackupKind.DATA, set_id, MANIFEST_NAME),
        ]
    )  # no preflight probe, no temp file, nothing else left behind


def test_every_file_is_0600_and_every_directory_0700(newest_set: Any, store_root: Path) -> None:
    entries = list(store_root.rglob("*"))
    assert len([p for p in entries if p.is_dir()]) >= 5  # hms-primary, three kinds, set folders
    for path in entries:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path} has mode {mode:o}, expected {expected:o}"


def test_manifest_sha256_matches_the_file_bytes_of_every_kind(
    newest_set: Any, file_store: Any, store_root: Path
) -> None:
    for kind in KINDS:
        backup_set = find_set(file_store, CLUSTER, kind, newest_set.backup_set_id)
        assert len(backup_set.manifest.payloads) == 1
        for payload in backup_set.manifest.payloads:
            data = (store_root / key_for(CLUSTER, kind, backup_set.backup_set_id, payload.name)).read_bytes()
            assert len(data) == payload.size_bytes
            assert hashlib.sha256(data).hexdigest() == payload.sha256
            assert not data.startswith(b"PGDMP") and not data.startswith(b"\x1f\x8b")  # encrypted, not a dump


def test_manifests_record_symmetric_encryption_and_gzip(newest_set: Any, file_store: Any) -> None:
    for kind in KINDS:
        body = find_set(file_store, CLUSTER, kind, newest_set.backup_set_id).manifest.body
        assert body["encryption"]["mode"] == "symmetric"
        assert body["encryption"]["key_id"] == "symmetric"
        assert body["compression"] == {"method": "gzip", "level": 6}


def test_passphrase_appears_in_no_manifest_no_file_name_no_stored_byte_and_not_in_the_run_output(
    file_run: Any, newest_set: Any, store_root: Path
) -> None:
    assert "backup set" in file_run.output  # the task logs were captured
    assert PASSPHRASE not in file_run.output
    secret = PASSPHRASE.encode()
    manifests = list(store_root.rglob(MANIFEST_NAME))
    assert len(manifests) == 3
    for path in store_root.rglob("*"):
        assert PASSPHRASE not in str(path)
        if path.is_file():
            assert secret not in path.read_bytes()


def test_dump_decrypts_with_the_passphrase_and_restores_to_exactly_the_baselines(
    newest_set: Any, file_store: Any, sandbox: Any, tmp_path: Path
) -> None:
    expected = newest_set.manifest.baselines
    assert expected["tables"]["public.patients"]["rows"] > 0
    archive = fetch_plain(file_store, newest_set, passphrase_key(PASSPHRASE), tmp_path / "fetch")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == newest_set.manifest.payloads[0].plain_sha256
    listing = subprocess.run(
        [newest_install().program("pg_restore"), "--list", str(archive)], capture_output=True, text=True, check=True
    ).stdout
    header = {
        line.split(":", 1)[0].strip("; \t"): line.split(":", 1)[1].strip()
        for line in listing.splitlines()[:20]
        if ":" in line
    }
    assert header.get("Compression") in ("6", "gzip")  # the custom archive's data blocks are gzip level 6
    database = restore_into_new_database(sandbox, archive)
    try:
        observed = observed_baselines(sandbox, database, expected)
        assert diff_baselines(expected, observed) == []
    finally:
        drop_database(sandbox, database)


def test_schema_export_decrypts_and_gunzips_to_plain_sql(newest_set: Any, file_store: Any, tmp_path: Path) -> None:
    schema_set = find_set(file_store, CLUSTER, BackupKind.SCHEMA, newest_set.backup_set_id)
    plain = fetch_plain(file_store, schema_set, passphrase_key(PASSPHRASE), tmp_path / "fetch")
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == schema_set.manifest.payloads[0].plain_sha256
    sql = plain.read_text()
    assert "CREATE TABLE public.patients" in sql
    assert "-- PostgreSQL database dump complete" in sql


def test_wrong_passphrase_fails_clearly_and_leaves_no_plain_file(
    newest_set: Any, file_store: Any, tmp_path: Path
) -> None:
    workdir = tmp_path / "wrong"
    wrong = secrets.token_hex(16)
    assert wrong != PASSPHRASE
    with pytest.raises(DecryptionFailed) as failure:
        fetch_plain(file_store, newest_set, passphrase_key(wrong), workdir)
    assert "passphrase" in failure.value.message
    assert wrong not in str(failure.value) and PASSPHRASE not in str(failure.value)
    assert list(workdir.iterdir()) == []  # neither the partial plain file nor the gpg home is left
    # The set itself is untouched by the failed attempt.
    payload = newest_set.manifest.payloads[0]
    stored = file_store.get_bytes(key_for(CLUSTER, BackupKind.LOGICAL, newest_set.backup_set_id, payload.name))
    assert hashlib.sha256(stored).hexdigest() == payload.sha256
    assert os.path.exists(file_store.describe(newest_set.manifest_key))
