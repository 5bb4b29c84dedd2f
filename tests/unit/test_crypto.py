"""gpg with real keys: the restore key is unlocked once when it is imported, so decryptions
that run at once never rewrite it; a failed decryption blames the key only when the payload
is for a key the restore key does not hold; a gpg home's agent goes with the home, and with
its owner when the owner is killed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from hms_dr.crypto import (
    DecryptionKey,
    EncryptionKey,
    ImportedKey,
    check_encryption_key,
    encrypt_stage,
    explain_decryption_failure,
    gpg_home,
    prepare_decryption,
)
from hms_dr.decrypt import decrypt_file, decrypt_to_file, plain_matches
from hms_dr.errors import DecryptionFailed, ToolFailed
from hms_dr.gpghome import agent_pid
from hms_dr.policy import EncryptionMode
from hms_dr.streams import Pipeline
from hms_sandbox.keys import export_public_key, export_secret_key, find_fingerprint, run_gpg

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
GONE_WITHIN_S = 15.0  # gpg-agent checks every 4 s whether its guardian still runs


@dataclass(frozen=True)
class KeyPair:
    fingerprint: str
    public_key: str
    secret_key: str
    passphrase: str
    encryption_key_id: str

    def restore_key(self, passphrase: str | None = None) -> DecryptionKey:
        return DecryptionKey(
            EncryptionMode.PUBLIC_KEY, private_key=self.secret_key, passphrase=passphrase or self.passphrase
        )


def make_key_pair(parent: Path, uid: str, passphrase: str) -> KeyPair:
    """A passphrase-protected key pair like the hospital's, on quick curves (the test is about gpg, not RSA)."""
    with gpg_home(parent) as home:
        run_gpg(home, ["--quick-gen-key", uid, "ed25519", "cert,sign", "never"], passphrase=passphrase)
        fingerprint = find_fingerprint(home, uid)
        run_gpg(home, ["--quick-add-key", fingerprint, "cv25519", "encr", "never"], passphrase=passphrase)
        listing = [line.split(":") for line in run_gpg(home, ["--with-colons", "--list-secret-keys"]).splitlines()]
        encryption_key_id = next(fields[4] for fields in listing if fields[0] == "ssb" and "e" in fields[11])
        return KeyPair(
            fingerprint,
            export_public_key(home, fingerprint),
            export_secret_key(home, fingerprint, passphrase),
            passphrase,
            encryption_key_id,
        )


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key_pair(
        tmp_path_factory.mktemp("ours"), "Hospital restore key <dr@example.invalid>", secrets.token_hex(16)
    )


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key_pair(
        tmp_path_factory.mktemp("theirs"), "Someone else <else@example.invalid>", "their-passphrase-7654321"
    )


def encrypt_to(pair: KeyPair, plain: bytes, parent: Path) -> bytes:
    with gpg_home(parent) as home:
        key = EncryptionKey(EncryptionMode.PUBLIC_KEY, pair.fingerprint, public_key=pair.public_key)
        check_encryption_key(home, key)
        with Pipeline([encrypt_stage(home, key)], source=io.BytesIO(plain)) as pipeline:
            return pipeline.output.read()


def decrypt_in(imported: ImportedKey, encrypted: bytes) -> bytes:
    """Decrypt with an imported key; a gpg failure becomes the DecryptionFailed an operator sees."""
    try:
        with Pipeline([imported.decrypt_stage()], source=io.BytesIO(encrypted)) as pipeline:
            return pipeline.output.read()
    except ToolFailed as exc:
        raise imported.explain(exc) from None


@pytest.fixture
def imported_ours(ours: KeyPair, tmp_path: Path) -> Iterator[ImportedKey]:
    with gpg_home(tmp_path) as home:
        yield prepare_decryption(home, ours.restore_key())


def test_a_payload_for_another_key_is_blamed_on_the_key_and_names_both(
    ours: KeyPair, theirs: KeyPair, tmp_path: Path
) -> None:
    encrypted = tmp_path / "dump.gpg"
    encrypted.write_bytes(encrypt_to(theirs, b"patient 42", tmp_path))
    with pytest.raises(DecryptionFailed) as failure:
        decrypt_file(encrypted, "dump.gpg", ours.restore_key(), tmp_path / "plain", staging_dir=tmp_path)
    message = failure.value.message
    assert message.startswith("the payload was encrypted to a key the restore key connection does not hold")
    assert theirs.encryption_key_id in message and ours.encryption_key_id in message
    assert not (tmp_path / "plain").exists()


def test_a_decrypted_payload_is_a_new_private_file_with_the_digest_of_its_plain_bytes(
    ours: KeyPair, imported_ours: ImportedKey, tmp_path: Path
) -> None:
    plain = b"patient 42, admitted 2026-11-24\n" * 50_000
    compressed = subprocess.run(["zstd", "-q", "-c", "-3"], input=plain, capture_output=True, check=True).stdout
    encrypted = tmp_path / "dump.zst.gpg"
    encrypted.write_bytes(encrypt_to(ours, compressed, tmp_path))
    destination = tmp_path / "dump.plain"
    digest = decrypt_to_file(encrypted, encrypted.name, imported_ours, destination)
    assert destination.read_bytes() == plain  # zstd -d ran because the name says .zst
    assert (digest.sha256, digest.size_bytes) == (hashlib.sha256(plain).hexdigest(), len(plain))
    assert destination.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):  # never written over unless the caller says so
        decrypt_to_file(encrypted, encrypted.name, imported_ours, destination)
    assert destination.read_bytes() == plain
    assert decrypt_to_file(encrypted, encrypted.name, imported_ours, destination, replace=True).sha256 == digest.sha256


def test_plain_bytes_match_only_the_digest_and_size_their_manifest_records(
    imported_ours: ImportedKey, ours: KeyPair, tmp_path: Path
) -> None:
    from hms_dr.manifest import Payload

    encrypted = tmp_path / "wal.gpg"
    encrypted.write_bytes(encrypt_to(ours, b"0123456789", tmp_path))
    digest = decrypt_to_file(encrypted, encrypted.name, imported_ours, tmp_path / "wal")
    right = hashlib.sha256(b"0123456789").hexdigest()
    assert plain_matches(Payload("wal.gpg", 1, "x", "wal", plain_size_bytes=10, plain_sha256=right), digest)
    assert plain_matches(Payload("wal.gpg", 1, "x", "wal"), digest)  # an old manifest recorded neither
    assert not plain_matches(Payload("wal.gpg", 1, "x", "wal", plain_size_bytes=11, plain_sha256=right), digest)
    assert not plain_matches(
        Payload("wal.gpg", 1, "x", "wal", plain_sha256=hashlib.sha256(b"other").hexdigest()), digest
    )


def test_damaged_payload_bytes_fail_as_one_decryption_line_and_leave_no_file(
    imported_ours: ImportedKey, ours: KeyPair, tmp_path: Path
) -> None:
    encrypted = tmp_path / "dump.gpg"
    good = encrypt_to(ours, os.urandom(200_000), tmp_path)
    encrypted.write_bytes(good[:1000] + bytes(b ^ 0xFF for b in good[1000:1100]) + good[1100:])
    with pytest.raises(DecryptionFailed):
        decrypt_to_file(encrypted, encrypted.name, imported_ours, tmp_path / "dump.plain")
    assert not (tmp_path / "dump.plain").exists()


def test_an_agent_that_is_gone_is_not_blamed_on_the_key(
    ours: KeyPair, imported_ours: ImportedKey, tmp_path: Path
) -> None:
    encrypted = encrypt_to(ours, b"patient 42", tmp_path)
    subprocess.run(
        ["gpgconf", "--homedir", str(imported_ours.home), "--kill", "gpg-agent"], check=True, capture_output=True
    )
    with pytest.raises(DecryptionFailed) as failure:
        decrypt_in(imported_ours, encrypted)
    message = failure.value.message
    assert "does not hold" not in message
    assert message.startswith(
        f"gpg could not decrypt the payload with restore key {ours.encryption_key_id}, which it is encrypted to"
    )
    assert message.endswith("(agent error: no gpg-agent running)")


def test_a_key_file_read_half_written_is_an_agent_error_not_a_wrong_key(
    ours: KeyPair, imported_ours: ImportedKey, tmp_path: Path
) -> None:
    # What gpg-agent 2.2 read when a concurrent first use rewrote the key file in place.
    encrypted = encrypt_to(ours, b"patient 42", tmp_path)
    for key_file in (imported_ours.home / "private-keys-v1.d").glob("*.key"):
        key_file.write_bytes(key_file.read_bytes()[: key_file.stat().st_size // 2])
    with pytest.raises(DecryptionFailed) as failure:
        decrypt_in(imported_ours, encrypted)
    assert "does not hold" not in failure.value.message
    assert (
        f"with restore key {ours.encryption_key_id}, which it is encrypted to (agent error: " in failure.value.message
    )


def test_a_wrong_passphrase_is_refused_when_the_key_is_imported(ours: KeyPair, tmp_path: Path) -> None:
    wrong = secrets.token_hex(16)
    with gpg_home(tmp_path) as home, pytest.raises(DecryptionFailed) as failure:
        prepare_decryption(home, ours.restore_key(passphrase=wrong))
    assert (
        failure.value.message
        == f"wrong passphrase for the restore key {ours.encryption_key_id} (gpg-agent: Bad passphrase)"
    )
    assert wrong not in str(failure.value) and ours.passphrase not in str(failure.value)


def test_decryptions_at_once_after_the_import_never_rewrite_the_key(
    ours: KeyPair, imported_ours: ImportedKey, tmp_path: Path
) -> None:
    # gpg-agent 2.2 converts an imported key on its first use and rewrites its file in place;
    # concurrent first uses then read it half written. prepare_decryption does that use alone.
    payloads = [encrypt_to(ours, f"wal {i}".encode(), tmp_path) for i in range(4)]
    before = key_file_digests(imported_ours.home)
    with ThreadPoolExecutor(max_workers=4) as pool:
        decrypted = list(pool.map(lambda payload: decrypt_in(imported_ours, payload), payloads))
    assert decrypted == [f"wal {i}".encode() for i in range(4)]
    assert key_file_digests(imported_ours.home) == before


def key_file_digests(home: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (home / "private-keys-v1.d").glob("*.key")
    }


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (
            ["gpg: AES256.CFB encrypted data", "gpg: decryption failed: Bad session key"],
            "wrong passphrase for the restore key or the symmetric backup",
        ),
        (
            [
                "gpg: no valid OpenPGP data found.",
                "[GNUPG:] NODATA 1",
                "gpg: decrypt_message failed: Unknown system error",
            ],
            "the encrypted payload is damaged",
        ),
        (
            [
                "gpg: AES256.CFB encrypted data",
                "gpg: WARNING: encrypted message has been manipulated!",
                "[GNUPG:] DECRYPTION_FAILED",
            ],
            "the encrypted payload is damaged",
        ),
    ],
)
def test_payloads_without_a_recipient_key_are_explained_by_what_gpg_said(lines: list[str], said: str) -> None:
    assert explain_decryption_failure(lines, frozenset({"0123456789ABCDEF"})).message.startswith(said)


def test_a_gpg_home_takes_its_agent_and_itself_away_when_the_block_ends(ours: KeyPair, tmp_path: Path) -> None:
    with gpg_home(tmp_path) as home:
        prepare_decryption(home, ours.restore_key())
        pid = agent_pid(home)
        assert pid is not None and psutil.pid_exists(pid)
    assert not home.exists()
    assert gone_within(pid, GONE_WITHIN_S), f"gpg-agent {pid} outlived its home"


OWNER = """
import json, sys, time
from pathlib import Path
from hms_dr.crypto import DecryptionKey, gpg_home, prepare_decryption
from hms_dr.gpghome import agent_pid
from hms_dr.policy import EncryptionMode
given = json.loads(sys.stdin.readline())
with gpg_home(Path(given["parent"])) as home:
    prepare_decryption(home, DecryptionKey(EncryptionMode.PUBLIC_KEY, private_key=given["secret"], passphrase=given["passphrase"]))
    print(json.dumps({"home": str(home), "agent": agent_pid(home)}), flush=True)
    time.sleep(600)
"""


def test_a_killed_owner_takes_the_agent_and_the_home_with_the_key_with_it(ours: KeyPair, tmp_path: Path) -> None:
    # A task killed with SIGKILL (with its whole process group) runs no cleanup of its own.
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PLUGINS)},
        start_new_session=True,
    )
    try:
        assert owner.stdin is not None and owner.stdout is not None
        owner.stdin.write(
            json.dumps({"parent": str(tmp_path), "secret": ours.secret_key, "passphrase": ours.passphrase}) + "\n"
        )
        owner.stdin.flush()
        started = json.loads(owner.stdout.readline())
        assert started["agent"] is not None and psutil.pid_exists(started["agent"])
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
    assert gone_within(started["agent"], GONE_WITHIN_S), f"the gpg-agent of {started['home']} outlived its killed owner"
    assert within(GONE_WITHIN_S, lambda: not Path(started["home"]).exists()), (
        "the home with the restore key outlived its killed owner"
    )


def gone_within(pid: int, seconds: float) -> bool:
    return within(seconds, lambda: not running(pid))


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
