"""The sandbox brings up PostgreSQL with WAL archiving, moto S3 and a usable GPG key, idempotently, and stops cleanly."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from archiving import Archiver, switch_wal

from hms_sandbox import Sandbox, load_sandbox, sandbox_status, start_sandbox, stop_sandbox
from hms_sandbox.airflow_env import build_airflow_env
from hms_sandbox.cluster import port_is_open, server_user

REPO_ROOT = Path(__file__).resolve().parents[2]
# What `make` exports for the sandbox's own commands: the engine (plugins/) and the sandbox (sandbox/).
SANDBOX_PYTHONPATH = os.pathsep.join(str(REPO_ROOT / root) for root in ("plugins", "sandbox"))

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

SCALE_MB = 5
ARCHIVE_SCRIPT = REPO_ROOT / "include" / "postgres" / "archive_wal.sh"


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: it is 0700, and as root the postgres user must walk through it.
    base = Path(tempfile.mkdtemp(prefix="hms-dr-sandbox-test-", dir="/tmp"))
    base.chmod(0o755)
    yield base / "sandbox"
    if not os.environ.get("HMS_DR_KEEP_TEST_SANDBOX"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sandbox(state_dir: Path, request: pytest.FixtureRequest) -> Sandbox:
    request.addfinalizer(lambda: stop_sandbox(state_dir))
    started = time.monotonic()
    started_sandbox = start_sandbox(state_dir, scale_mb=SCALE_MB)
    log.info("sandbox started from scratch in %.1f s", time.monotonic() - started)
    return started_sandbox


def _connection_extra(sandbox: Sandbox, name: str) -> dict[str, object]:
    connection: dict[str, object] = json.loads(build_airflow_env(sandbox)[name])
    return connection


def _gpg(home: Path, *args: str, passphrase: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    if passphrase is not None:
        argv += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    return subprocess.run(
        [*argv, *args],
        input="" if passphrase is None else passphrase + "\n",
        capture_output=True,
        text=True,
        check=False,
    )


def _fresh_gnupg_home(parent: Path, name: str) -> Path:
    home = parent / name
    home.mkdir(mode=0o700)
    return home


def test_cluster_answers_as_hms_backup_over_tcp_with_its_password(sandbox: Sandbox) -> None:
    with psycopg.connect(sandbox.dsn("hms_backup")) as conn:
        row = conn.execute("SELECT current_user, current_database(), host(inet_server_addr())").fetchone()
    assert row == ("hms_backup", "hospital_management", "127.0.0.1")
    wrong = sandbox.cluster().dsn("hms_backup", secrets.token_hex(16), "hospital_management")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_cluster_has_data_checksums_and_wal_archiving(sandbox: Sandbox) -> None:
    with psycopg.connect(sandbox.dsn("hms_backup")) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("data_checksums", "archive_mode", "wal_level", "archive_command")
        }  # type: ignore[index]
    assert settings["data_checksums"] == "on"
    assert settings["archive_mode"] == "on"
    assert settings["wal_level"] == "replica"
    # The server runs the sandbox's copy of the repository's script (see _server_files).
    server_copy = sandbox.paths.server_files_dir / ARCHIVE_SCRIPT.name
    assert str(server_copy) in settings["archive_command"]
    assert server_copy.read_bytes() == ARCHIVE_SCRIPT.read_bytes()
    assert str(sandbox.paths.spool_dir) in settings["archive_command"]


def test_switched_wal_segment_reaches_the_spool_with_mode_0600(sandbox: Sandbox) -> None:
    with psycopg.connect(sandbox.superuser_dsn("hospital_management"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sandbox_wal_probe (id serial PRIMARY KEY, at timestamptz DEFAULT now())"
        )
        conn.execute("INSERT INTO sandbox_wal_probe DEFAULT VALUES")
        segment = switch_wal(conn)
    Archiver.of_sandbox(sandbox).wait_spooled([segment])
    archived = sandbox.paths.spool_dir / segment
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    assert archived.stat().st_size == 16 * 1024 * 1024
    if server_user() is not None:
        assert archived.owner() == server_user()
    assert not [p for p in sandbox.paths.spool_dir.iterdir() if p.name.startswith(".")], "temp files left in the spool"


def test_archive_script_accepts_identical_and_refuses_different_segment(sandbox: Sandbox) -> None:
    work = Path(tempfile.mkdtemp(dir=sandbox.state_dir))
    (work / "pg_wal").mkdir()
    spool = work / "spool"
    spool.mkdir()
    segment = work / "pg_wal" / "0000000100000000000000AA"
    segment.write_bytes(os.urandom(8192))

    def archive() -> subprocess.CompletedProcess[str]:
        # PostgreSQL runs archive_command in the data directory with a relative %p.
        return subprocess.run(
            [str(ARCHIVE_SCRIPT), "pg_wal/" + segment.name, str(spool)],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )

    assert archive().returncode == 0
    archived = spool / segment.name
    assert archived.read_bytes() == segment.read_bytes()
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    assert archive().returncode == 0, "an identical segment archived again must succeed"

    original = archived.read_bytes()
    segment.write_bytes(os.urandom(8192))
    refused = archive()
    assert refused.returncode != 0
    assert "refusing to overwrite" in refused.stderr
    assert archived.read_bytes() == original
    assert sorted(p.name for p in spool.iterdir()) == [segment.name]


def test_moto_buckets_exist_and_offsite_has_object_lock(sandbox: Sandbox) -> None:
    import boto3

    connection = _connection_extra(sandbox, "AIRFLOW_CONN_HMS_STORAGE")
    extra = connection["extra"]
    assert isinstance(extra, dict)
    client = boto3.client(
        "s3",
        endpoint_url=extra["endpoint_url"],
        region_name=extra["region_name"],
        aws_access_key_id=connection["login"],
        aws_secret_access_key=connection["password"],
    )
    names = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    assert {"hms-backups", "hms-offsite"} <= names
    lock = client.get_object_lock_configuration(Bucket="hms-offsite")["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert (
        json.loads(build_airflow_env(sandbox)["AIRFLOW_CONN_HMS_OFFSITE"])["extra"]["endpoint_url"]
        == sandbox.s3_endpoint_url
    )


def test_gpg_encrypts_to_exported_public_key_and_decrypts_with_exported_secret_key(sandbox: Sandbox) -> None:
    public_key = _connection_extra(sandbox, "AIRFLOW_CONN_HMS_BACKUP_ENCRYPTION")["extra"]["public_key"]  # type: ignore[index]
    restore = _connection_extra(sandbox, "AIRFLOW_CONN_HMS_RESTORE_KEY")
    secret_key, passphrase = restore["extra"]["private_key"], restore["password"]  # type: ignore[index]
    work = Path(tempfile.mkdtemp(dir=sandbox.state_dir))
    encrypting, decrypting = _fresh_gnupg_home(work, "enc"), _fresh_gnupg_home(work, "dec")
    try:
        (work / "public.asc").write_text(public_key)
        (work / "secret.asc").write_text(secret_key)
        (work / "plain").write_bytes(b"patient 42: all good\n" * 100)
        assert _gpg(encrypting, "--import", str(work / "public.asc")).returncode == 0
        encrypted = _gpg(
            encrypting,
            "--trust-model",
            "always",
            "--recipient",
            sandbox.fingerprint,
            "--output",
            str(work / "plain.gpg"),
            "--encrypt",
            str(work / "plain"),
        )
        assert encrypted.returncode == 0, encrypted.stderr

        assert _gpg(decrypting, "--import", str(work / "secret.asc")).returncode == 0
        wrong = _gpg(
            decrypting,
            "--output",
            str(work / "wrong"),
            "--decrypt",
            str(work / "plain.gpg"),
            passphrase=secrets.token_hex(16),  # any passphrase but the key's
        )
        assert wrong.returncode != 0
        decrypted = _gpg(
            decrypting,
            "--output",
            str(work / "decrypted"),
            "--decrypt",
            str(work / "plain.gpg"),
            passphrase=str(passphrase),
        )
        assert decrypted.returncode == 0, decrypted.stderr
        assert (work / "decrypted").read_bytes() == (work / "plain").read_bytes()
    finally:
        for home in (encrypting, decrypting):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


def test_policy_points_at_the_sandbox(sandbox: Sandbox) -> None:
    policy = yaml.safe_load(sandbox.paths.policy_file.read_text())
    committed = yaml.safe_load((REPO_ROOT / "include" / "policy.yaml").read_text())
    assert policy["encryption"]["key_id"] == sandbox.fingerprint
    assert policy["staging"]["dir"] == str(sandbox.paths.staging_dir)
    assert policy["wal"]["spool_dir"] == str(sandbox.paths.spool_dir)
    assert (policy["store"]["primary_url"], policy["store"]["offsite_url"]) == ("s3://hms-backups", "s3://hms-offsite")
    assert policy["schedules"] == committed["schedules"]
    assert build_airflow_env(sandbox)["HMS_DR_POLICY"] == str(sandbox.paths.policy_file)


def test_secrets_stay_in_private_files(sandbox: Sandbox) -> None:
    for private in (sandbox.paths.env_file, sandbox.paths.secrets_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    state_text = sandbox.paths.state_file.read_text()
    for secret in sandbox.secrets.values():
        assert secret not in state_text
        assert secret not in sandbox.paths.policy_file.read_text()
        assert secret not in repr(sandbox)
    exported = dict(
        shlex.split(line)[1].split("=", 1)
        for line in sandbox.paths.env_file.read_text().splitlines()
        if line.startswith("export ")
    )
    assert exported == build_airflow_env(sandbox)
    postgres = json.loads(exported["AIRFLOW_CONN_HMS_POSTGRES"])
    assert (postgres["login"], postgres["port"], postgres["schema"]) == (
        "hms_backup",
        sandbox.pg_port,
        "hospital_management",
    )


def test_cli_status_and_env_report_the_sandbox(sandbox: Sandbox) -> None:
    env = {**os.environ, "PYTHONPATH": SANDBOX_PYTHONPATH}
    status = subprocess.run(
        [sys.executable, "-m", "hms_sandbox", "status", "--state-dir", str(sandbox.state_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"running  127.0.0.1:{sandbox.pg_port}" in status.stdout
    assert sandbox.fingerprint in status.stdout
    env_path = subprocess.run(
        [sys.executable, "-m", "hms_sandbox", "env", "--state-dir", str(sandbox.state_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert env_path.stdout.strip() == str(sandbox.paths.env_file)


def test_second_start_reuses_everything_and_restarts_only_what_is_down(sandbox: Sandbox) -> None:
    with psycopg.connect(sandbox.superuser_dsn("hospital_management"), autocommit=True) as conn:
        conn.execute("CREATE TABLE sandbox_reload_probe (id int)")
    postmaster_pid = sandbox.cluster().postmaster_pid()
    loaded_at = json.loads(sandbox.paths.state_file.read_text())["hms_database"]["loaded_at"]
    sandbox.s3_server().stop()

    again = start_sandbox(sandbox.state_dir, scale_mb=SCALE_MB)

    assert (again.pg_port, again.s3_port, again.fingerprint) == (sandbox.pg_port, sandbox.s3_port, sandbox.fingerprint)
    assert again.secrets == sandbox.secrets
    assert build_airflow_env(again) == build_airflow_env(sandbox)
    assert again.cluster().postmaster_pid() == postmaster_pid, "a running PostgreSQL must not be restarted"
    assert again.s3_server().is_running()
    assert json.loads(sandbox.paths.state_file.read_text())["hms_database"]["loaded_at"] == loaded_at
    with psycopg.connect(again.superuser_dsn("hospital_management")) as conn:
        assert conn.execute("SELECT to_regclass('sandbox_reload_probe') IS NOT NULL").fetchone() == (True,), (
            "data was reloaded"
        )
    assert load_sandbox(sandbox.state_dir) == again


def test_stop_stops_everything_and_keeps_the_data(sandbox: Sandbox) -> None:
    stop_sandbox(sandbox.state_dir)

    assert not port_is_open(sandbox.pg_port)
    assert not port_is_open(sandbox.s3_port)
    assert not sandbox.cluster().is_running()
    assert not sandbox.s3_server().is_running()
    assert (sandbox.paths.data_dir / "PG_VERSION").exists()
    all_up, lines = sandbox_status(sandbox.state_dir)
    assert not all_up
    assert any(line.startswith("postgres   stopped") for line in lines)
    agents = subprocess.run(
        ["pgrep", "-f", f"gpg-agent --homedir {sandbox.paths.gnupg_home}"], capture_output=True, check=False
    )
    assert agents.returncode != 0, "a gpg-agent outlived the sandbox"
