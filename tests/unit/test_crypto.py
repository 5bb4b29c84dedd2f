"""gpg with real keys: a gpg home's agent goes with the home, and with its owner when the owner
is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from hms_dr.crypto import DecryptionKey, gpg_home, prepare_decryption
from hms_dr.gpghome import agent_pid
from hms_dr.policy import EncryptionMode
from hms_dr.sandbox.keys import export_public_key, export_secret_key, find_fingerprint, run_gpg

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
        return DecryptionKey(EncryptionMode.PUBLIC_KEY, private_key=self.secret_key, passphrase=passphrase or self.passphrase)


def make_key_pair(parent: Path, uid: str, passphrase: str) -> KeyPair:
    """A passphrase-protected key pair like the hospital's, on quick curves (the test is about gpg, not RSA)."""
    with gpg_home(parent) as home:
        run_gpg(home, ["--quick-gen-key", uid, "ed25519", "cert,sign", "never"], passphrase=passphrase)
        fingerprint = find_fingerprint(home, uid)
        run_gpg(home, ["--quick-add-key", fingerprint, "cv25519", "encr", "never"], passphrase=passphrase)
        listing = [line.split(":") for line in run_gpg(home, ["--with-colons", "--list-secret-keys"]).splitlines()]
        encryption_key_id = next(fields[4] for fields in listing if fields[0] == "ssb" and "e" in fields[11])
        return KeyPair(fingerprint, export_public_key(home, fingerprint), export_secret_key(home, fingerprint, passphrase),
                       passphrase, encryption_key_id)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key_pair(tmp_path_factory.mktemp("ours"), "Hospital restore key <dr@example.invalid>", "our-passphrase-1234567")


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
        [sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(PLUGINS)}, start_new_session=True,
    )
    try:
        assert owner.stdin is not None and owner.stdout is not None
        owner.stdin.write(json.dumps({"parent": str(tmp_path), "secret": ours.secret_key, "passphrase": ours.passphrase}) + "\n")
        owner.stdin.flush()
        started = json.loads(owner.stdout.readline())
        assert started["agent"] is not None and psutil.pid_exists(started["agent"])
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
    assert gone_within(started["agent"], GONE_WITHIN_S), f"the gpg-agent of {started['home']} outlived its killed owner"
    assert within(GONE_WITHIN_S, lambda: not Path(started["home"]).exists()), "the home with the restore key outlived its killed owner"


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
