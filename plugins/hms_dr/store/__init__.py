"""A store is where backup sets live: a mounted NAS (``file://``) or an S3 bucket (``s3://``).

``base`` defines the one interface both drivers implement, the records it returns and the rules for
keys; :func:`open_store` here picks the driver by URL scheme. No other engine code knows which
driver it holds; callers check :class:`StoreFeatures`, never ``isinstance``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from hms_dr.store.base import (
    DEFAULT_PART_SIZE_BYTES,
    Expected,
    ObjectLockRetention,
    PutResult,
    Store,
    StoredObject,
    StoreFeatures,
    check_writable,
    validate_key,
    validate_prefix,
)


def open_store(
    url: str,
    *,
    s3_client: Any | None = None,
    part_size_bytes: int = DEFAULT_PART_SIZE_BYTES,
    sse: str | None = None,
    object_lock: ObjectLockRetention | None = None,
) -> Store:
    """Open the store at `url` (``file:///abs/path`` or ``s3://bucket[/prefix]``).

    :param s3_client: a boto3 S3 client, required for ``s3://``; the tasks layer builds it from
        an Airflow connection, so the endpoint may be AWS, MinIO or moto.
    :param sse: ``ServerSideEncryption`` for every S3 write (``"AES256"``, ``"aws:kms"``); None sets none.
    :param object_lock: the retention uploads carry if the bucket has Object Lock enabled (asked
        once, here); ``features.supports_object_lock`` then says so. Ignored by the file driver.
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"store url must not have a query or fragment: {url!r}")
    if parts.scheme == "file":
        from hms_dr.store.file import FileStore

        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file store url must be file:///absolute/path, got {url!r}")
        return FileStore(unquote(parts.path))
    if parts.scheme == "s3":
        if s3_client is None:
            raise ValueError(f"opening {url} needs an s3_client (a boto3 S3 client)")
        # Imported here so that DAG files, which import this package, never load boto3.
        from hms_dr.store.s3 import S3Store

        return S3Store(
            parts.netloc,
            parts.path,
            client=s3_client,
            part_size_bytes=part_size_bytes,
            sse=sse,
            object_lock=object_lock,
        )
    raise ValueError(f"unknown store url scheme {parts.scheme!r} in {url!r}; use file:// or s3://")


__all__ = [
    "DEFAULT_PART_SIZE_BYTES",
    "Expected",
    "ObjectLockRetention",
    "PutResult",
    "Store",
    "StoreFeatures",
    "StoredObject",
    "check_writable",
    "open_store",
    "validate_key",
    "validate_prefix",
]
