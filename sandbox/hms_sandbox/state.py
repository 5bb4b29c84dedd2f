"""The sandbox's state directory: where each component lives, and the records kept between runs.

``state.json`` holds ports, pids, paths and the key fingerprint (never a secret);
``secrets.json`` (mode 0600) holds the generated passwords, S3 keys and the GPG passphrase and keys.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hms_dr.errors import PreflightFailed
from hms_dr.files import write_file_atomically
from hms_dr.pginstalls import data_dir_major
from hms_sandbox.cluster import SUPERUSER, LocalCluster
from hms_sandbox.s3server import MotoServer

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FORMAT_VERSION = 1
HMS_DATABASE = "hospital_management"
HMS_ROLES = ("hms_admin", "hms_backup", "hms_replica")
PRIMARY_BUCKET = "hms-backups"
OFFSITE_BUCKET = "hms-offsite"
GPG_UID = "HMS DR sandbox <hms-dr-sandbox@example.invalid>"


def default_state_dir() -> Path:
    """``$HMS_DR_SANDBOX`` when set, else ``<repo>/.sandbox``."""
    configured = os.environ.get("HMS_DR_SANDBOX")
    return Path(configured).absolute() if configured else REPO_ROOT / ".sandbox"


@dataclass(frozen=True)
class SandboxPaths:
    """Every file and directory of one sandbox, and the repository files it uses."""

    state_dir: Path
    state_file: Path
    secrets_file: Path
    env_file: Path
    policy_file: Path
    cluster_dir: Path
    data_dir: Path
    pg_log_file: Path
    socket_dir: Path
    spool_dir: Path
    s3_dir: Path
    gnupg_home: Path
    staging_dir: Path
    airflow_home: Path
    repo_root: Path
    committed_policy: Path
    conf_fragment: Path
    archive_script: Path
    server_files_dir: Path  # copies of the two above, which the server reads (see lifecycle)
    dags_dir: Path
    plugins_dir: Path

    @classmethod
    def at(cls, state_dir: Path | None = None, repo_root: Path = REPO_ROOT) -> SandboxPaths:
        """The layout under ``state_dir`` (default: :func:`default_state_dir`)."""
        root = (state_dir or default_state_dir()).absolute()
        cluster_dir = root / "pg" / "primary"
        return cls(
            state_dir=root,
            state_file=root / "state.json",
            secrets_file=root / "secrets.json",
            env_file=root / "airflow.env",
            policy_file=root / "policy.yaml",
            cluster_dir=cluster_dir,
            data_dir=cluster_dir / "data",
            pg_log_file=cluster_dir / "log" / "postgresql.log",
            socket_dir=cluster_dir / "sockets",
            spool_dir=root / "wal-spool",
            s3_dir=root / "s3",
            gnupg_home=root / "gnupg",
            staging_dir=root / "staging",
            airflow_home=root / "airflow",
            repo_root=repo_root,
            committed_policy=repo_root / "include" / "policy.yaml",
            conf_fragment=repo_root / "include" / "postgres" / "postgresql.hms.conf",
            archive_script=repo_root / "include" / "postgres" / "archive_wal.sh",
            server_files_dir=root / "server-files",
            dags_dir=repo_root / "dags",
            plugins_dir=repo_root / "plugins",
        )

    def as_strings(self) -> dict[str, str]:
        """The paths as strings, for state.json."""
        return {name: str(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class SandboxSecrets:
    """Generated credentials; ``repr`` shows none of them."""

    role_passwords: Mapping[str, str] = field(repr=False)
    s3_access_key: str = field(repr=False)
    s3_secret_key: str = field(repr=False)
    gpg_passphrase: str = field(repr=False)
    gpg_public_key: str = field(default="", repr=False)
    gpg_secret_key: str = field(default="", repr=False)

    @classmethod
    def generate(cls) -> SandboxSecrets:
        """Fresh random passwords for the superuser and the HMS roles, S3 keys and a GPG passphrase."""
        alphabet = string.ascii_uppercase + string.digits
        return cls(
            role_passwords={role: secrets.token_urlsafe(24) for role in (SUPERUSER, *HMS_ROLES)},
            s3_access_key="AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
            s3_secret_key=secrets.token_urlsafe(30)[:40],
            gpg_passphrase=secrets.token_urlsafe(24),
        )

    def with_gpg_keys(self, public_key: str, secret_key: str) -> SandboxSecrets:
        """A copy holding the exported armored keys."""
        return replace(self, gpg_public_key=public_key, gpg_secret_key=secret_key)

    def values(self) -> list[str]:
        """Every secret string, for tests that check nothing leaked."""
        return [*self.role_passwords.values(), self.s3_access_key, self.s3_secret_key, self.gpg_passphrase]


@dataclass(frozen=True)
class Sandbox:
    """A started sandbox: where everything runs, and how to connect to it."""

    paths: SandboxPaths
    pg_port: int
    s3_port: int
    fingerprint: str
    secrets: SandboxSecrets = field(repr=False)
    restore_target_port: int | None = None
    database: str = HMS_DATABASE
    primary_bucket: str = PRIMARY_BUCKET
    offsite_bucket: str = OFFSITE_BUCKET

    @property
    def state_dir(self) -> Path:
        """The sandbox's state directory."""
        return self.paths.state_dir

    @property
    def s3_endpoint_url(self) -> str:
        """The moto S3 endpoint."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pg_major(self) -> int:
        """The PostgreSQL major the sandbox runs (its data directory's)."""
        return data_dir_major(self.paths.data_dir)

    def cluster(self) -> LocalCluster:
        """The primary PostgreSQL cluster."""
        return LocalCluster(self.paths.data_dir, self.pg_port, self.paths.pg_log_file, self.paths.socket_dir)

    def s3_server(self) -> MotoServer:
        """The moto S3 server."""
        return MotoServer(self.s3_port, self.paths.s3_dir)

    def superuser_dsn(self, db: str = "postgres") -> str:
        """libpq DSN of the ``postgres`` superuser."""
        return self.dsn(SUPERUSER, db)

    def dsn(self, role: str, db: str | None = None) -> str:
        """libpq DSN of ``role`` (postgres, hms_admin, hms_backup, hms_replica); db defaults to the HMS database."""
        try:
            password = self.secrets.role_passwords[role]
        except KeyError:
            raise PreflightFailed(
                f"the sandbox has no password for role {role!r}; known: {', '.join(self.secrets.role_passwords)}"
            ) from None
        return self.cluster().dsn(role, password, db or self.database)

    def s3_client(self, config: Any = None) -> Any:
        """A boto3 S3 client for the sandbox's moto server (outside Airflow: tests, demo, bench);
        ``config`` is an optional botocore Config."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.secrets.s3_access_key,
            aws_secret_access_key=self.secrets.s3_secret_key,
            config=config,
        )


def load_state(paths: SandboxPaths) -> dict[str, Any]:
    """The recorded state, or an empty dict for a sandbox never started."""
    if not paths.state_file.exists():
        return {}
    state: dict[str, Any] = json.loads(paths.state_file.read_text(encoding="utf-8"))
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise PreflightFailed(
            f"{paths.state_file} has format_version {state.get('format_version')!r}, expected {STATE_FORMAT_VERSION}"
        )
    return state


def save_state(paths: SandboxPaths, state: Mapping[str, Any]) -> None:
    """Record the state (ports, pids, paths, fingerprint; no secrets)."""
    write_file_atomically(
        paths.state_file, json.dumps({"format_version": STATE_FORMAT_VERSION, **state}, indent=2, sort_keys=True) + "\n"
    )


def load_secrets(paths: SandboxPaths) -> SandboxSecrets | None:
    """The sandbox's secrets, or None before its first start."""
    if not paths.secrets_file.exists():
        return None
    raw = json.loads(paths.secrets_file.read_text(encoding="utf-8"))
    return SandboxSecrets(**raw)


def save_secrets(paths: SandboxPaths, sandbox_secrets: SandboxSecrets) -> None:
    """Write secrets.json with mode 0600."""
    raw = asdict(sandbox_secrets)
    raw["role_passwords"] = dict(sandbox_secrets.role_passwords)
    write_file_atomically(paths.secrets_file, json.dumps(raw, indent=2) + "\n", mode=0o600)


def load_sandbox(state_dir: Path | None = None) -> Sandbox:
    """The sandbox recorded in ``state_dir`` (default ``$HMS_DR_SANDBOX`` or ``<repo>/.sandbox``)."""
    paths = SandboxPaths.at(state_dir)
    state = load_state(paths)
    sandbox_secrets = load_secrets(paths)
    fingerprint = state.get("gpg", {}).get("fingerprint")
    if not state or sandbox_secrets is None or not fingerprint or "s3" not in state:
        raise PreflightFailed(
            f"no fully started sandbox in {paths.state_dir}",
            hint="run: PYTHONPATH=plugins:sandbox python -m hms_sandbox start",
        )
    return Sandbox(
        paths=paths,
        pg_port=int(state["postgres"]["port"]),
        restore_target_port=int(state["restore_target"]["port"]) if "restore_target" in state else None,
        s3_port=int(state["s3"]["port"]),
        fingerprint=str(fingerprint),
        secrets=sandbox_secrets,
        database=str(state.get("database", HMS_DATABASE)),
    )
