"""The streamed base backup (the default method) against a real PostgreSQL 15, moto S3 and gpg.

Its staging holds the backup's WAL and manifest, never the cluster: a cluster many times the
staging bound is backed up with the bound enforced (sampled on disk while it runs), and a bound
below what must be staged fails the run with nothing published. pg_basebackup's stream is
tampered with on its way by a wrapper program (a fault injector standing in for a broken disk,
network or server: the real pg_basebackup runs underneath): a truncated stream, a corrupt
header, a file missing from the stream and one byte changed inside a file each fail the backup
before base.tar's upload completes, so nothing that looks like a set is left.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_base_backup import connection, leftovers, stored_under

from hms_dr.crypto import EncryptionKey
from hms_dr.errors import BackupVerificationFailed
from hms_dr.manifest import MANIFEST_NAME
from hms_dr.pginstalls import data_install
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.physical.streamed import StagingBoundExceeded
from hms_dr.physical.tarstream import TarStreamBroken
from hms_dr.policy import EncryptionMode
from hms_dr.store import Store

pytestmark = pytest.mark.integration

CLUSTER = "hms-streamed"

# The wrapper: runs the real pg_basebackup, then hands on its stdout as TAMPER says. It walks the
# tar's headers itself (a few lines, independent of the code under test).
WRAPPER = """#!{python}
import subprocess, sys
REAL, TAMPER = {real!r}, {tamper!r}
if "--version" in sys.argv or "-V" in sys.argv:
    raise SystemExit(subprocess.call([REAL, *sys.argv[1:]]))
done = subprocess.run([REAL, *sys.argv[1:]], stdout=subprocess.PIPE)
data = bytearray(done.stdout)

def members():
    offset = 0
    while data[offset:offset + 512].strip(b"\\0"):
        size = int(data[offset + 124:offset + 136].strip(b"\\0 ") or b"0", 8)
        name = bytes(data[offset:offset + 100]).rstrip(b"\\0").decode()
        end = offset + 512 + -(-size // 512) * 512
        yield name, offset, size, end
        offset = end

found = list(members())
if TAMPER == "truncate":
    data = data[: len(data) // 2]
elif TAMPER == "corrupt-header":
    name, offset, size, end = found[3]
    data[offset + 1] ^= 0x20  # the name changes, the header's checksum no longer matches
elif TAMPER == "drop-file":
    name, offset, size, end = next(m for m in found if m[0] == "PG_VERSION")
    del data[offset:end]
elif TAMPER == "flip-byte":
    name, offset, size, end = next(m for m in found if m[0].startswith("base/") and m[2] > 8192)
    data[offset + 512 + size // 2] ^= 0xFF
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
raise SystemExit(done.returncode)
"""


@pytest.fixture(scope="module")
def encryption_key(sandbox: Any) -> EncryptionKey:
    return EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)


@pytest.fixture()
def tampering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point hms-dr at a PostgreSQL 15 bin directory whose pg_basebackup tampers with its stream."""

    def install(tamper: str) -> None:
        real = data_install(15)
        bin_dir = tmp_path / f"bin-{tamper}"
        bin_dir.mkdir()
        for program in Path(real.bin_dir).iterdir():
            (bin_dir / program.name).symlink_to(program)
        (bin_dir / "pg_basebackup").unlink()
        wrapper = bin_dir / "pg_basebackup"
        wrapper.write_text(WRAPPER.format(python=sys.executable, real=real.program("pg_basebackup"), tamper=tamper))
        wrapper.chmod(0o755)
        monkeypatch.setenv("HMS_DR_PG_BIN_15", str(bin_dir))

    return install


class StagingSampler(threading.Thread):
    """The bytes of every file under ``staging``, sampled every 10 ms while a backup runs."""

    def __init__(self, staging: Path) -> None:
        super().__init__(daemon=True)
        self.staging = staging
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            total = 0
            for root, _, files in os.walk(self.staging):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(root, name)).st_size
                    except FileNotFoundError:
                        continue
            self.peak = max(self.peak, total)


@pytest.fixture()
def sampled(tmp_path: Path) -> Iterator[StagingSampler]:
    sampler = StagingSampler(tmp_path / "staging")
    sampler.start()
    yield sampler
    sampler.stop.set()
    sampler.join()


def back_up(sandbox: Any, store: Store, key: EncryptionKey, staging: Path, cluster: str, **options: Any) -> Any:
    return take_base_backup(
        connection(sandbox.dsn("hms_replica")),
        store,
        cluster,
        encryption_key=key,
        staging_dir=staging,
        zstd_level=1,
        **options,
    )


def assert_nothing_published(store: Store, cluster: str, staging: Path) -> None:
    assert stored_under(store, cluster) == [], "a failed run left objects in the store"
    assert MANIFEST_NAME not in " ".join(stored_under(store, cluster))
    assert leftovers(staging) == [], "a failed run left files in staging"


def test_a_cluster_many_times_the_staging_bound_is_backed_up_within_it(
    sandbox: Any, primary_store: Store, encryption_key: EncryptionKey, tmp_path: Path, sampled: StagingSampler
) -> None:
    limit = 1 << 20
    result = back_up(sandbox, primary_store, encryption_key, tmp_path / "staging", CLUSTER, staging_limit_bytes=limit)
    sampled.stop.set()
    sampled.join()
    wal_tar = next(p for p in result["payloads"] if p["name"].startswith("pg_wal.tar"))
    assert result["sizes"]["cluster_bytes"] > 20 * limit
    # What the run counted and what was seen on disk: the WAL of the backup window plus the bound.
    assert result["sizes"]["staged_peak_bytes"] <= limit + wal_tar["plain_size_bytes"]
    assert 0 < sampled.peak <= limit + wal_tar["plain_size_bytes"], sampled.peak
    assert result["base_backup"]["method"] == "streamed"
    assert leftovers(tmp_path / "staging") == []


def test_a_bound_below_the_manifest_fails_the_run_with_nothing_published(
    sandbox: Any, primary_store: Store, encryption_key: EncryptionKey, tmp_path: Path
) -> None:
    cluster = f"{CLUSTER}-bound"
    with pytest.raises(StagingBoundExceeded, match=r"over base_backup\.staging_limit_mb") as caught:
        back_up(sandbox, primary_store, encryption_key, tmp_path / "staging", cluster, staging_limit_bytes=4096)
    assert "\n" not in caught.value.message and "backup_manifest" in caught.value.message
    assert_nothing_published(primary_store, cluster, tmp_path / "staging")


@pytest.mark.parametrize(
    "tamper, error, words",
    [
        ("truncate", TarStreamBroken, "the stream ended"),
        ("corrupt-header", TarStreamBroken, "a corrupt member header"),
        ("drop-file", BackupVerificationFailed, '"PG_VERSION" is present in the manifest but not in the backup'),
        ("flip-byte", BackupVerificationFailed, 'checksum mismatch for file "base/'),
    ],
)
def test_a_tampered_stream_fails_the_backup_before_anything_is_published(
    sandbox: Any,
    primary_store: Store,
    encryption_key: EncryptionKey,
    tmp_path: Path,
    tampering: Callable[[str], None],
    tamper: str,
    error: type[Exception],
    words: str,
) -> None:
    cluster = f"{CLUSTER}-{tamper}"
    tampering(tamper)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        back_up(sandbox, primary_store, encryption_key, tmp_path / "staging", cluster)
    assert words in str(caught.value) and "\n" not in caught.value.message, caught.value  # type: ignore[attr-defined]
    assert time.monotonic() - started < 120
    assert_nothing_published(primary_store, cluster, tmp_path / "staging")
