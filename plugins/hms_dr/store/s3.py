"""The S3 store: backup sets in a bucket (AWS, MinIO, moto), addressed as ``s3://bucket[/prefix]``.

Large payloads stream through a multipart upload whose parts go up on a background thread while the
next part is read; any failure aborts the upload so no invisible parts are left. Only this module
imports botocore, and it is imported only when an ``s3://`` store is opened.

Object Lock: opened with an :class:`ObjectLockRetention`, the store asks the bucket once whether
it has Object Lock; if so every upload carries the retention mode and a retain-until date, and
the bucket is versioned (S3 requires it). Object Lock protects versions, not keys: a locked
object can still get a newer version on top (how a corrupted copy is repaired), while deleting
it is refused before it is tried (:class:`ObjectLocked`): a plain DELETE would "succeed" by
adding a delete marker that hides the object and frees nothing.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from hms_dr.errors import HmsDrError, ObjectLocked, ObjectMissing, StoreRefused, StoreUnavailable
from hms_dr.store.base import (
    DEFAULT_PART_SIZE_BYTES,
    Expected,
    GuardedReader,
    ObjectLockRetention,
    ProgressMeter,
    PutResult,
    StoredObject,
    StoreFeatures,
    buffered,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)

MIN_PART_SIZE_BYTES = 5 * 2**20  # S3 rejects smaller parts (except the last)
MAX_PART_SIZE_BYTES = 5 * 2**30
MAX_PARTS = 10_000

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_AUTH_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
     "InvalidToken", "AllAccessDisabled", "AccountProblem"}
)  # fmt: skip
# NoSuchUpload: the upload vanished (e.g. a lifecycle rule aborted it); ConditionalRequestConflict: a
# concurrent conditional write is still deciding. Retrying the whole put is the answer to both.
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "RequestLimitExceeded",
     "TooManyRequestsException", "RequestTimeout", "InternalError", "ServiceUnavailable", "NoSuchUpload",
     "ConditionalRequestConflict"}
)  # fmt: skip
_TRANSIENT_BOTO_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError, FlexibleChecksumError)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


class S3Store:
    """A store in an S3 bucket, optionally below a key prefix, using a caller-built boto3 client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any,
        part_size_bytes: int = DEFAULT_PART_SIZE_BYTES,
        sse: str | None = None,
        object_lock: ObjectLockRetention | None = None,
    ) -> None:
        """:param sse: ServerSideEncryption for every write ("AES256", "aws:kms"); None sets none.
        :param object_lock: the retention uploads carry when the bucket has Object Lock enabled."""
        if not bucket or "/" in bucket:
            raise ValueError(f"s3 store needs a bucket name, got {bucket!r}")
        if not MIN_PART_SIZE_BYTES <= part_size_bytes <= MAX_PART_SIZE_BYTES:
            raise ValueError(
                f"part_size_bytes must be between {MIN_PART_SIZE_BYTES} and {MAX_PART_SIZE_BYTES}, "
                f"got {part_size_bytes}"
            )
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.part_size_bytes = part_size_bytes
        self.sse = sse
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client = client
        # Asked only when the caller wants locked uploads: one request, and a bucket that answers
        # "no Object Lock" simply gets unlocked uploads.
        self.object_lock = object_lock if object_lock is not None and self._bucket_has_object_lock() else None
        self.features = StoreFeatures(
            needs_fsync=False, supports_object_lock=self.object_lock is not None, local_path=None
        )

    # -- writing -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        src: BinaryIO,
        *,
        overwrite: bool = False,
        progress: Callable[[int], None] | None = None,
        expect: Expected | None = None,
    ) -> PutResult:
        """Stream `src` to `key`: one put_object if it fits in a part, else a multipart upload
        (completed only once every byte is read and, with `expect`, proven)."""
        validate_key(key)
        if not overwrite and self._head(key) is not None:
            # Early refusal before streaming; the conditional write (IfNoneMatch) is the real guard.
            raise self._refuse_existing(key)
        digest = hashlib.sha256()
        meter = ProgressMeter(progress, every_bytes=self.part_size_bytes)
        first = _read_full(src, self.part_size_bytes)
        digest.update(first)
        meter.add(len(first))
        if len(first) < self.part_size_bytes:
            if expect is not None:
                expect.check(self.describe(key), len(first), digest.hexdigest())
            self._put_object(key, first, digest.hexdigest(), overwrite=overwrite)
        else:
            self._put_multipart(key, first, src, digest, meter, overwrite=overwrite, expect=expect)
        meter.finish()
        return PutResult(key=key, size_bytes=meter.total, sha256=digest.hexdigest())

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = False) -> PutResult:
        """Store a small in-memory payload under `key`."""
        return self.put(key, io.BytesIO(data), overwrite=overwrite)

    def _put_object(self, key: str, data: bytes, sha256: str, *, overwrite: bool) -> None:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full(key),
            "Body": data,
            "Metadata": {"sha256": sha256},
            **self._sse_args(),
            **self._lock_args(),
        }
        if not overwrite:
            args["IfNoneMatch"] = "*"
        self._call("write", key, self._client.put_object, conditional=not overwrite, **args)

    def _put_multipart(
        self,
        key: str,
        first: bytes,
        src: BinaryIO,
        digest: Any,
        meter: ProgressMeter,
        *,
        overwrite: bool,
        expect: Expected | None,
    ) -> None:
        full = self._full(key)
        lock_args = self._lock_args()
        create_args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, **self._sse_args(), **lock_args}
        created = self._call("write", key, self._client.create_multipart_upload, **create_args)
        upload_id: str = created["UploadId"]

        def upload_part(number: int, data: bytes) -> str:
            response = self._call(
                "write",
                key,
                self._client.upload_part,
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            return str(response["ETag"])

        uploader = _PartUploader(upload_part)
        try:
            uploader.submit(1, first)
            number = 1
            while True:
                chunk = _read_full(src, self.part_size_bytes)  # the source's own errors propagate
                if not chunk:
                    break
                number += 1
                if number > MAX_PARTS:
                    raise StoreRefused(
                        f"{self.describe(key)} needs more than {MAX_PARTS} parts of {self.part_size_bytes} bytes",
                        hint="raise part_size_bytes for this store",
                    )
                digest.update(chunk)
                meter.add(len(chunk))
                uploader.submit(number, chunk)
            parts = uploader.finish()
            if expect is not None:
                expect.check(self.describe(key), meter.total, digest.hexdigest())
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": full,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if not overwrite:
                args["IfNoneMatch"] = "*"
            completed = self._call(
                "write", key, self._client.complete_multipart_upload, conditional=not overwrite, **args
            )
        except BaseException:
            # Covers KeyboardInterrupt too. Stop the uploader first, so no part lands after the abort.
            uploader.cancel()
            self._abort(full, upload_id)
            raise
        if lock_args:
            self._ensure_retention(key, completed.get("VersionId"), lock_args)

    def _abort(self, full: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return  # already gone: nothing is left behind
            self._log_abort_failure(full, upload_id, exc)
        except Exception as exc:
            self._log_abort_failure(full, upload_id, exc)

    def _log_abort_failure(self, full: str, upload_id: str, exc: Exception) -> None:
        log.error(
            "could not abort multipart upload %s of s3://%s/%s: %s; its parts stay stored "
            "until a lifecycle rule for incomplete uploads removes them",
            upload_id,
            self.bucket,
            full,
            exc,
        )

    # -- reading -------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Open `key` for a streaming read of the get_object body."""
        validate_key(key)
        response = self._call("read", key, self._client.get_object, Bucket=self.bucket, Key=self._full(key))
        reader = GuardedReader(
            response["Body"],
            lambda exc: self._translate(exc, key, "read"),
            catch=(BotoCoreError, ClientError),
        )
        return buffered(reader)

    def get_bytes(self, key: str) -> bytes:
        """Read the whole object at `key`."""
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        validate_key(key)
        return self._head(key) is not None

    def stat(self, key: str) -> StoredObject:
        """Size and mtime of `key`."""
        validate_key(key)
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no object {self.describe(key)}")
        return _stored_object(key, head)

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        """Every object whose key starts with `prefix`, sorted by key."""
        validate_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        skip = len(self.prefix) + 1 if self.prefix else 0
        found: builtins.list[StoredObject] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full_prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][skip:]
                    try:
                        validate_key(key)
                    except ValueError:
                        log.warning("skipping s3://%s/%s: not a valid store key", self.bucket, item["Key"])
                        continue
                    found.append(StoredObject(key, int(item["Size"]), item["LastModified"]))
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, None, "list") from exc
        return sorted(found, key=lambda o: o.key)

    # -- deleting and the rest -----------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove `key`; S3 deletes silently, so a head first tells a missing key apart. A locked
        object is refused (ObjectLocked) before any delete is sent; in a bucket with Object Lock
        every version of the key goes, so nothing stays stored behind a delete marker."""
        validate_key(key)
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no object {self.describe(key)}")
        self._refuse_if_locked(_stored_object(key, head))
        if self.features.supports_object_lock:
            self._delete_every_version(key)
            return
        self._call("delete", key, self._client.delete_object, Bucket=self.bucket, Key=self._full(key))

    def _refuse_if_locked(self, stored: StoredObject) -> None:
        now = datetime.now(UTC)
        if not stored.locked_at(now):
            return
        why = (
            "a legal hold is on" if stored.legal_hold else f"retained until {stored.retained_until:%Y-%m-%d %H:%M} UTC"
        )
        raise ObjectLocked(
            f"{self.describe(stored.key)} is under Object Lock ({why}): not deleted",
            hint="retention deletes it on a run after the lock ends; nobody can shorten a COMPLIANCE lock",
        )

    def _delete_every_version(self, key: str) -> None:
        """Delete the older versions and delete markers first and the current version last, after
        checking that none of them is still locked, so a refusal leaves the key as it was."""
        full = self._full(key)
        listed = self._call("list", key, self._client.list_object_versions, Bucket=self.bucket, Prefix=full)
        versions = [v for v in listed.get("Versions", []) if v["Key"] == full]
        markers = [m for m in listed.get("DeleteMarkers", []) if m["Key"] == full]
        for version in versions:
            if not version.get("IsLatest"):
                head = self._call(
                    "read", key, self._client.head_object, Bucket=self.bucket, Key=full, VersionId=version["VersionId"]
                )
                self._refuse_if_locked(_stored_object(key, head))
        ordered = sorted([*versions, *markers], key=lambda v: bool(v.get("IsLatest")))
        for version in ordered:
            self._call(
                "delete", key, self._client.delete_object, Bucket=self.bucket, Key=full, VersionId=version["VersionId"]
            )

    def free_bytes(self) -> int | None:
        """S3 has no meaningful free-space figure."""
        return None

    def describe(self, key: str) -> str:
        """The s3:// URL of `key`."""
        return f"{self.url}/{key}"

    # -- helpers -------------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _sse_args(self) -> dict[str, str]:
        return {"ServerSideEncryption": self.sse} if self.sse else {}

    def _lock_args(self) -> dict[str, Any]:
        if self.object_lock is None:
            return {}
        until = datetime.now(UTC) + timedelta(days=self.object_lock.days)
        return {"ObjectLockMode": self.object_lock.mode, "ObjectLockRetainUntilDate": until}

    def _bucket_has_object_lock(self) -> bool:
        try:
            response = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                log.info("bucket %s has no Object Lock: uploads to %s are not locked", self.bucket, self.url)
                return False
            raise self._translate(exc, None, "read the Object Lock configuration of") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, None, "read the Object Lock configuration of") from exc
        enabled = response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        if not enabled:
            log.info("bucket %s has no Object Lock: uploads to %s are not locked", self.bucket, self.url)
        return enabled

    def _ensure_retention(self, key: str, version_id: str | None, lock_args: dict[str, Any]) -> None:
        """Some S3 endpoints (moto among them) drop the lock given when a multipart upload starts:
        check the stored version and set its retention explicitly when it is missing."""
        version: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        head = self._call("read", key, self._client.head_object, Bucket=self.bucket, Key=self._full(key), **version)
        if head.get("ObjectLockRetainUntilDate") is not None:
            return
        log.info("the endpoint did not lock multipart upload %s: setting its retention explicitly", self.describe(key))
        retention = {"Mode": lock_args["ObjectLockMode"], "RetainUntilDate": lock_args["ObjectLockRetainUntilDate"]}
        self._call(
            "write",
            key,
            self._client.put_object_retention,
            Bucket=self.bucket,
            Key=self._full(key),
            Retention=retention,
            **version,
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except (BotoCoreError, ClientError) as exc:
            error = self._translate(exc, key, "read")
            # HEAD has no body, so a missing bucket is a plain 404 too; a later write tells them apart.
            if isinstance(error, ObjectMissing):
                return None
            raise error from exc
        return response

    def _call(
        self, op: str, key: str | None, fn: Callable[..., Any], *, conditional: bool = False, **kwargs: Any
    ) -> Any:
        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, op, conditional=conditional) from exc

    def _refuse_existing(self, key: str) -> StoreRefused:
        return StoreRefused(
            f"refusing to overwrite {self.describe(key)}: it already exists",
            hint="objects in a store are never replaced; a new backup set needs a new key",
        )

    def _translate(self, exc: BaseException, key: str | None, op: str, *, conditional: bool = False) -> HmsDrError:
        """Map a botocore failure to the store error an operator (and the retry logic) can act on."""
        if isinstance(exc, HmsDrError):
            return exc
        where = self.describe(key) if key else self.url
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            detail = f"{code or 'error'} (HTTP {status})"
            if conditional and (code == "PreconditionFailed" or status == 412) and key is not None:
                return StoreRefused(
                    f"refusing to overwrite {where}: another writer stored it first",
                    hint="objects in a store are never replaced; a new backup set needs a new key",
                )
            if code == "NoSuchBucket":
                return StoreRefused(
                    f"S3 bucket {self.bucket} does not exist ({op} {where})",
                    hint="check the bucket name in the store url and the endpoint/region of the connection",
                )
            if code in _MISSING_CODES:
                return ObjectMissing(f"no object {where}")
            if code in _AUTH_CODES or status in (401, 403):
                return StoreRefused(
                    f"S3 refused {op} {where}: {detail}",
                    hint=f"check the connection's access key and secret and that its policy allows {op} "
                    f"in bucket {self.bucket}",
                )
            if code == "NotImplemented" or status == 501:
                return StoreRefused(
                    f"the S3 endpoint does not implement {op} {where} as hms-dr asks: {detail}",
                    hint="hms-dr needs conditional writes (If-None-Match); use AWS S3 or a recent MinIO",
                )
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return StoreUnavailable(f"S3 failed {op} {where}: {detail}", hint="a later retry may succeed")
            return StoreRefused(f"S3 refused {op} {where}: {detail} {error.get('Message', '')}".rstrip())
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return StoreRefused(
                f"no usable S3 credentials for {op} {where}: {exc}",
                hint="check the access key and secret of the store's Airflow connection",
            )
        if isinstance(exc, SSLError):
            return StoreRefused(
                f"TLS to the S3 endpoint failed for {op} {where}: {exc}",
                hint="check the endpoint URL and the CA bundle of the connection",
            )
        if isinstance(exc, _TRANSIENT_BOTO_ERRORS):
            return StoreUnavailable(
                f"cannot reach S3 for {op} {where}: {exc}",
                hint=f"check the endpoint of the connection and the network path to bucket {self.bucket}",
            )
        return StoreRefused(f"S3 client failed {op} {where}: {type(exc).__name__}: {exc}")


# Parts sent at once. One connection's round trips left the link idle between parts (the
# offsite sync at 1.6 x an s3transfer copy with 10 threads); two keep it busy. With as many parts
# queued, at most 2 + 2 parts of store.part_size_mib are held at once, whatever the payload's size.
PART_UPLOAD_THREADS = 2


class _PartUploader:
    """Uploads parts on PART_UPLOAD_THREADS background threads; at most that many parts are being
    sent and as many queued (``submit`` blocks beyond that)."""

    def __init__(self, upload: Callable[[int, bytes], str], threads: int = PART_UPLOAD_THREADS) -> None:
        self._upload = upload
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=threads)
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._etags: dict[int, str] = {}
        self._threads = [
            threading.Thread(target=self._run, name=f"hms-dr-s3-parts-{n}", daemon=True) for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None or self._cancelled.is_set():
                continue  # keep draining so the producer never blocks on a full queue
            number, data = item
            try:
                etag = self._upload(number, data)
            except BaseException as exc:
                with self._lock:
                    self._error = self._error or exc  # the first failure is the one to report
                continue
            with self._lock:
                self._etags[number] = etag

    def submit(self, number: int, data: bytes) -> None:
        """Queue a part, blocking while the threads are busy and the queue full; raises a failure
        of an earlier part."""
        self._raise_if_failed()
        self._queue.put((number, data))

    def finish(self) -> builtins.list[dict[str, Any]]:
        """Wait for every queued part; return them for complete_multipart_upload."""
        self._stop()
        self._raise_if_failed()
        return [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]

    def cancel(self) -> None:
        """Drop queued parts, let the parts being sent finish, and stop the threads."""
        self._cancelled.set()
        self._stop()

    def _stop(self) -> None:
        for thread in self._threads:
            if thread.is_alive():
                self._queue.put(None)  # one per thread: each takes one and ends
        for thread in self._threads:
            thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


def _stored_object(key: str, head: dict[str, Any]) -> StoredObject:
    """A head_object response as a StoredObject, Object Lock included (the dates are UTC)."""
    retained_until = head.get("ObjectLockRetainUntilDate")
    if isinstance(retained_until, datetime) and retained_until.tzinfo is None:
        retained_until = retained_until.replace(tzinfo=UTC)
    return StoredObject(
        key,
        size_bytes=int(head["ContentLength"]),
        modified_at=head["LastModified"],
        retained_until=retained_until,
        legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
    )


def _read_full(src: BinaryIO, size: int) -> bytes:
    """Read `size` bytes from `src`, or fewer only at end of stream (pipes return short reads)."""
    chunks: builtins.list[bytes] = []
    have = 0
    while have < size:
        chunk = src.read(size - have)
        if not chunk:
            break
        chunks.append(chunk)
        have += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
