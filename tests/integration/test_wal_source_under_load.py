"""A recovery's WAL keeps decrypting on a busy host (issue 11): WAL sets served by the WAL source
with prefetch on, fetched the way restore_command fetches them, while two other processes keep
both cores busy. Every file arrives with its archived bytes; no failure, and none blamed on the key.

Each recovery imports the restore key into a fresh gpg home, and the first decryptions there
were the dangerous ones: gpg-agent 2.2 converts an imported key on its first use and rewrites
the key file in place, so decryptions started together read it half written, or left it
protected with another S2K count than the one it records (see ``hms_dr.crypto._unlock_once``).
That struck a few recoveries in a hundred; so besides "every file arrives", each recovery
checks what makes it impossible: no decryption rewrites the restore key in the gpg home.

The key is made the way the sandbox makes the hospital's (RSA 3072, passphrase-protected); the
store is the file driver, so that the time goes to gpg, not to PostgreSQL or S3. Most of it is
gpg-agent deriving the key from the passphrase for every decryption (its calibrated S2K count).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hms_dr.crypto import DecryptionKey, EncryptionKey, gpg_home
from hms_dr.physical import walfetch
from hms_dr.physical.walsource import WalSource
from hms_dr.policy import EncryptionMode
from hms_dr.store import open_store
from hms_dr.wal.ship import ship_spool
from hms_sandbox.keys import export_public_key, export_secret_key, generate_key_pair

pytestmark = pytest.mark.integration

CLUSTER = "hms-busy-host"
RECOVERIES = 8
FILES_PER_RECOVERY = 12  # 8 x 12 = 96 decryptions, 3 at a time at the start of each recovery (where the race was)
WAL_FILE_BYTES = 16 << 10  # small: what counts is the number of decryptions, not their size
PREFETCH = 2
BUSY_PROCESSES = 2
# A busy loop that ends by itself, so that not even a killed test run leaves it spinning.
BUSY_LOOP = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"
# Made up per run: a test key's passphrase is no literal in the code either.
PASSPHRASE = secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ShippedWal:
    store: Any
    names: tuple[str, ...]
    sha256: dict[str, str]
    restore_key: DecryptionKey


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> ShippedWal:
    """FILES_PER_RECOVERY WAL files shipped (zstd, gpg to the test's own key) into a file store."""
    work = tmp_path_factory.mktemp("busy")
    with gpg_home(work) as keyring:
        fingerprint = generate_key_pair(keyring, "HMS DR busy host test <dr-test@example.invalid>", PASSPHRASE)
        public_key = export_public_key(keyring, fingerprint)
        secret_key = export_secret_key(keyring, fingerprint, PASSPHRASE)
    spool = work / "spool"
    spool.mkdir()
    names = tuple(f"00000001{0:08X}{segment:08X}" for segment in range(1, FILES_PER_RECOVERY + 1))
    for name in names:
        (spool / name).write_bytes(os.urandom(WAL_FILE_BYTES))
    sha256 = {name: hashlib.sha256((spool / name).read_bytes()).hexdigest() for name in names}
    (work / "store").mkdir()
    store = open_store(f"file://{work / 'store'}")
    encryption_key = EncryptionKey(EncryptionMode.PUBLIC_KEY, fingerprint, public_key=public_key)
    ship_spool(
        store,
        CLUSTER,
        spool,
        encryption_key=encryption_key,
        zstd_level=1,
        staging_dir=work / "staging",
        remove_from_spool=True,
    )
    restore_key = DecryptionKey(EncryptionMode.PUBLIC_KEY, private_key=secret_key, passphrase=PASSPHRASE)
    return ShippedWal(store, names, sha256, restore_key)


@pytest.fixture
def both_cores_busy() -> Iterator[None]:
    """Two processes that spin for the whole test, stopped at its end."""
    spinning = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(BUSY_PROCESSES)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
        for process in spinning:
            process.wait()


@dataclass(frozen=True)
class Recovered:
    failures: list[str]  # "<file>: <what restore_command was told>"
    fetched_ahead: int
    key_rewritten: bool  # a decryption rewrote the restore key in the recovery's gpg home


def recover_once(shipped: ShippedWal, staging: Path, received: Path) -> Recovered:
    """One recovery's worth of restore_command calls, in replay order, as PostgreSQL makes them."""
    failures = []
    with WalSource(shipped.store, CLUSTER, shipped.restore_key, staging_dir=staging, prefetch=PREFETCH) as source:
        source.expect(shipped.names)
        directory = source.serve()
        imported = restore_key_files(staging)
        for name in shipped.names:
            destination = received / name
            try:
                walfetch.fetch(str(directory), name, str(destination))
            except walfetch.FetchFailed as exc:
                failures.append(f"{name}: {exc}")
                continue
            if hashlib.sha256(destination.read_bytes()).hexdigest() != shipped.sha256[name]:
                failures.append(f"{name}: other bytes than archived")
            destination.unlink()
        key_rewritten = restore_key_files(staging) != imported
    return Recovered(failures, source.stats.fetched_ahead, key_rewritten)


def restore_key_files(staging: Path) -> dict[str, str]:
    """The sha256 of each secret key file in the one gpg home the WAL source made in ``staging``."""
    (home,) = staging.glob("gnupg-*")
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (home / "private-keys-v1.d").glob("*.key")
    }


def test_a_hundred_wal_files_decrypt_through_the_wal_source_while_both_cores_are_busy(
    shipped: ShippedWal, both_cores_busy: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.monotonic()
    # Short: gpg homes go beside the WAL source's files only under a short staging directory.
    staging, received = tmp_path_factory.mktemp("st"), tmp_path_factory.mktemp("pg_wal")
    recoveries = [recover_once(shipped, staging, received) for _ in range(RECOVERIES)]
    failures = [f"recovery {i}: {line}" for i, recovered in enumerate(recoveries) for line in recovered.failures]
    decryptions = RECOVERIES * len(shipped.names)
    print(
        f"{decryptions} WAL files through the WAL source under load in {time.monotonic() - started:.1f} s: {len(failures)} failed"
    )
    assert failures == [], f"{len(failures)} of {decryptions} WAL files failed under load:\n" + "\n".join(failures)
    rewritten = [i for i, recovered in enumerate(recoveries) if recovered.key_rewritten]
    assert rewritten == [], (
        f"decryptions rewrote the restore key in the gpg home of recoveries {rewritten}, while others read it"
    )
    # Every file after the first of a recovery was decrypted ahead, beside another decryption.
    assert sum(recovered.fetched_ahead for recovered in recoveries) == RECOVERIES * (len(shipped.names) - 1)
