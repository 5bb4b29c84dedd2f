"""Engine inputs built from Airflow Connections: the database, the stores and the keys.

Secrets are read here and handed to the engine as values that never reach a log: dataclass
fields with repr=False, and Airflow's secret masker for anything that could be printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Connection

from hms_dr.crypto import DecryptionKey, EncryptionKey
from hms_dr.errors import DecryptionFailed, EncryptionFailed, PreflightFailed
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import EncryptionMode, Policy

if TYPE_CHECKING:
    from hms_dr.store import Store


def _get(conn_id: str) -> Any:
    try:
        return Connection.get(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends: one line, not a traceback
        raise PreflightFailed(f"Airflow connection {conn_id!r} is not defined: {exc}") from None


def database_connection(conn_id: str, database: str | None = None) -> ConnectionInfo:
    """The postgres Connection as ConnectionInfo; ``database`` overrides its schema field."""
    conn = _get(conn_id)
    dbname = database or conn.schema
    if not conn.host or not dbname or not conn.login:
        raise PreflightFailed(f"Airflow connection {conn_id!r} needs host, login and schema (the database)")
    extra = conn.extra_dejson or {}
    return ConnectionInfo(
        host=conn.host,
        port=int(conn.port or 5432),
        user=conn.login,
        dbname=dbname,
        password=conn.password,
        sslmode=extra.get("sslmode"),
    )


def restore_target_connection(policy: Policy) -> ConnectionInfo:
    """The restore-target server, as the role that creates and drops scratch databases there."""
    return database_connection(policy.cluster.restore_target_connection_id)


def open_policy_store(policy: Policy, *, offsite: bool = False) -> Store:
    """The primary (or offsite) store, with an S3 client from the policy's aws Connection."""
    from hms_dr.store import open_store

    url = policy.store.offsite_url if offsite else policy.store.primary_url
    conn_id = policy.store.offsite_connection_id if offsite else policy.store.connection_id
    client = None
    if url.startswith("s3://"):
        client = s3_client(conn_id)
    return open_store(url, s3_client=client, part_size_bytes=policy.store.part_size_mib << 20)


def s3_client(conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config

    _get(conn_id)  # a clear error when the connection is missing
    # Bounded retries and timeouts: an unreachable store fails this attempt in seconds and
    # Airflow's own retries (with backoff) take over.
    config = Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"})
    return S3Hook(aws_conn_id=conn_id, config=config).get_conn()


def encryption_key(policy: Policy) -> EncryptionKey:
    conn = _get(policy.encryption.connection_id)
    if policy.encryption.mode is EncryptionMode.SYMMETRIC:
        if not conn.password:
            raise EncryptionFailed(
                f"connection {policy.encryption.connection_id!r} holds no passphrase (password field)"
            )
        return EncryptionKey(EncryptionMode.SYMMETRIC, "symmetric", passphrase=conn.password)
    public_key = (conn.extra_dejson or {}).get("public_key")
    if not public_key:
        raise EncryptionFailed(f"connection {policy.encryption.connection_id!r} holds no extra.public_key")
    return EncryptionKey(EncryptionMode.PUBLIC_KEY, policy.encryption.key_id, public_key=public_key)


def decryption_key(policy: Policy) -> DecryptionKey:
    """The restore key; only restore tasks call this."""
    conn = _get(policy.encryption.restore_connection_id)
    if policy.encryption.mode is EncryptionMode.SYMMETRIC:
        if not conn.password:
            raise DecryptionFailed(f"connection {policy.encryption.restore_connection_id!r} holds no passphrase")
        return DecryptionKey(EncryptionMode.SYMMETRIC, passphrase=conn.password)
    private_key = (conn.extra_dejson or {}).get("private_key")
    return DecryptionKey(EncryptionMode.PUBLIC_KEY, private_key=private_key, passphrase=conn.password)
