"""One contract for every store driver: the file driver on a tmp dir and the S3 driver on a real moto_server."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"
sys.path.insert(0, str(PLUGINS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from moto_server import MotoServer, free_port  # noqa: E402

from hms_dr.errors import ChecksumMismatch, ObjectMissing, StoreRefused, StoreUnavailable  # noqa: E402
from hms_dr.store import Expected, Store, check_writable, open_store  # noqa: E402

PART = 5 * 2**20  # S3's minimum part size
LARGE = 12 * 2**20 + 12345  # three parts: 5 + 5 + ~2 MiB
KEY = "hms-primary/logical/20261124T020000Z/dump.pgdump.zst.gpg"


def make_s3_client(endpoint_url: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@dataclass
class Harness:
    """A store under test plus raw access to what it left behind."""

    kind: str
    store: Store
    root: Path | None = None
    client: Any = None
    bucket: str | None = None

    def leftovers(self) -> list[str]:
        """Everything physically present: files (temp files too) or objects plus unfinished uploads."""
        if self.root is not None:
            return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())
        objects = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted([o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads])


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def new_bucket(client: Any) -> str:
    name = f"hms-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(moto: MotoServer) -> Harness:
    client = make_s3_client(moto.endpoint_url)
    bucket = new_bucket(client)
    store = open_store(f"s3://{bucket}/hms", s3_client=client, part_size_bytes=PART)
    return Harness("s3", store, client=client, bucket=bucket)


@pytest.fixture
def nas(tmp_path: Path) -> Harness:
    root = tmp_path / "nas"
    root.mkdir()
    return Harness("file", open_store(root.as_uri()), root=root)


@pytest.fixture(params=["file", "s3"])
def h(request: pytest.FixtureRequest) -> Harness:
    harness: Harness = request.getfixturevalue("nas" if request.param == "file" else "s3")
    return harness


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FailingSource(io.RawIOBase):
    """Serves `good_bytes` of zeros, then raises `exc` from read."""

    def __init__(self, good_bytes: int, exc: BaseException) -> None:
        self.remaining = good_bytes
        self.exc = exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining == 0:
            raise self.exc
        n = min(len(buffer), self.remaining, 2**20)
        buffer[:n] = bytes(n)
        self.remaining -= n
        return n


class RacingSource(io.BytesIO):
    """A payload whose first read lets another writer store the same key first."""

    def __init__(self, data: bytes, on_first_read: Any) -> None:
        super().__init__(data)
        self.on_first_read = on_first_read

    def read(self, n: int | None = -1) -> bytes:
        if self.on_first_read is not None:
            hook, self.on_first_read = self.on_first_read, None
            hook()
        return super().read(n)


def pipe_from_thread(data: bytes) -> tuple[BinaryIO, threading.Thread]:
    """The read end of an os.pipe() that a thread fills with `data` in odd-sized writes."""
    r, w = os.pipe()

    def write() -> None:
        view = memoryview(data)
        try:
            with os.fdopen(w, "wb", buffering=0) as out:
                while view:
                    n = out.write(view[: 65536 + 7])
                    view = view[n or 0 :]
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return os.fdopen(r, "rb"), writer


# -- contract: both drivers ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1])
def test_small_payload_round_trips_with_matching_sha256(h: Harness, size: int) -> None:
    data = os.urandom(size)
    result = h.store.put(KEY, io.BytesIO(data))
    assert (result.key, result.size_bytes, result.sha256) == (KEY, size, sha256(data))
    assert h.store.get_bytes(KEY) == data
    assert h.store.stat(KEY).size_bytes == size


def test_multi_part_payload_streams_from_a_pipe_and_round_trips(h: Harness) -> None:
    data = os.urandom(LARGE)
    src, writer = pipe_from_thread(data)
    seen: list[int] = []
    with src:
        result = h.store.put(KEY, src, progress=seen.append)
    writer.join(timeout=10)
    assert (result.size_bytes, result.sha256) == (LARGE, sha256(data))
    with h.store.open(KEY) as f:
        chunks = iter(lambda: f.read(1_000_003), b"")
        assert sha256(b"".join(chunks)) == sha256(data)
    assert seen == sorted(seen) and seen[-1] == LARGE
    assert len(seen) <= LARGE // PART + 2


def test_multi_part_payload_streams_from_a_pipeline_of_programs(h: Harness) -> None:
    # The daily backup stores a Pipeline's CheckedReader: several parts, then EOF read more than once.
    from hms_dr.streams import Pipeline, Stage

    data = os.urandom(LARGE)
    with Pipeline([Stage("cat", ["cat"])], source=io.BytesIO(data)) as pipeline:
        result = h.store.put(KEY, pipeline.output)  # type: ignore[arg-type]
    assert (result.size_bytes, result.sha256) == (LARGE, sha256(data))
    assert sha256(h.store.get_bytes(KEY)) == sha256(data)


def test_a_failed_pipeline_stores_nothing(h: Harness) -> None:
    from hms_dr.errors import ToolFailed
    from hms_dr.streams import Pipeline, Stage

    data = os.urandom(LARGE)
    failing = Stage("dies-late", ["sh", "-c", "cat; exit 3"])
    with pytest.raises(ToolFailed), Pipeline([failing], source=io.BytesIO(data)) as pipeline:
        h.store.put(KEY, pipeline.output)  # type: ignore[arg-type]
    assert not h.store.exists(KEY)


def test_put_bytes_reports_what_it_stored(h: Harness) -> None:
    result = h.store.put_bytes("a/manifest.json", b'{"format_version": 1}')
    assert result.sha256 == sha256(b'{"format_version": 1}')
    assert h.store.get_bytes("a/manifest.json") == b'{"format_version": 1}'


def test_refuses_to_overwrite_and_the_original_bytes_survive(h: Harness) -> None:
    h.store.put_bytes(KEY, b"original")
    with pytest.raises(StoreRefused) as refused:
        h.store.put(KEY, io.BytesIO(b"replacement"))
    assert h.store.describe(KEY) in str(refused.value)
    assert h.store.get_bytes(KEY) == b"original"


def test_refuses_to_overwrite_before_reading_the_source(h: Harness) -> None:
    h.store.put_bytes(KEY, b"original")
    with pytest.raises(StoreRefused):
        h.store.put(KEY, FailingSource(0, AssertionError("source was read")))  # type: ignore[arg-type]


def test_overwrite_true_replaces_the_bytes(h: Harness) -> None:
    h.store.put_bytes(KEY, b"original")
    result = h.store.put_bytes(KEY, b"replacement", overwrite=True)
    assert result.sha256 == sha256(b"replacement")
    assert h.store.get_bytes(KEY) == b"replacement"
    assert len(h.leftovers()) == 1


@pytest.mark.parametrize("size", [10, 2 * PART + 1], ids=["single-part", "multi-part"])
def test_a_writer_that_loses_a_race_is_refused_and_the_winner_survives(h: Harness, size: int) -> None:
    def other_writer_wins() -> None:
        h.store.put_bytes(KEY, b"winner")

    with pytest.raises(StoreRefused):
        h.store.put(KEY, RacingSource(bytes(size), other_writer_wins))
    assert h.store.get_bytes(KEY) == b"winner"
    assert len(h.leftovers()) == 1


def test_list_is_recursive_sorted_and_filtered_by_prefix(h: Harness) -> None:
    keys = ["b/4", "a/b/2", "ab/3", "a/1", "a/b/c/5"]
    for key in random.sample(keys, len(keys)):
        h.store.put_bytes(key, key.encode())
    assert [o.key for o in h.store.list()] == sorted(keys)
    assert [o.key for o in h.store.list("a/")] == ["a/1", "a/b/2", "a/b/c/5"]
    assert [o.key for o in h.store.list("a")] == ["a/1", "a/b/2", "a/b/c/5", "ab/3"]
    assert [o.key for o in h.store.list("a/b")] == ["a/b/2", "a/b/c/5"]
    assert [o.size_bytes for o in h.store.list("b/")] == [3]


def test_list_of_an_unknown_prefix_is_empty(h: Harness) -> None:
    h.store.put_bytes("a/1", b"x")
    assert h.store.list("zzz/") == []
    assert h.store.list("a/1/") == []


def test_stat_reports_size_and_a_utc_modification_time(h: Harness) -> None:
    h.store.put_bytes(KEY, b"12345")
    obj = h.store.stat(KEY)
    assert obj.key == KEY and obj.size_bytes == 5
    assert obj.modified_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - obj.modified_at) < timedelta(minutes=1)
    assert h.store.list() == [obj]


def test_exists_tells_stored_keys_from_missing_ones(h: Harness) -> None:
    h.store.put_bytes(KEY, b"x")
    assert h.store.exists(KEY)
    assert not h.store.exists(KEY + ".sha256")
    assert not h.store.exists("hms-primary/logical")  # a "directory" is not an object


def test_delete_removes_the_object_and_a_second_delete_reports_it_missing(h: Harness) -> None:
    h.store.put_bytes(KEY, b"x")
    h.store.put_bytes("hms-primary/other", b"y")
    h.store.delete(KEY)
    assert not h.store.exists(KEY)
    assert [o.key for o in h.store.list()] == ["hms-primary/other"]
    with pytest.raises(ObjectMissing):
        h.store.delete(KEY)


@pytest.mark.parametrize("operation", ["stat", "get_bytes", "open", "delete"])
def test_a_missing_key_is_object_missing(h: Harness, operation: str) -> None:
    with pytest.raises(ObjectMissing):
        getattr(h.store, operation)(KEY)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs/key",
        "../escape",
        "a/../b",
        "..",
        ".",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "dir/.dump.partial-0123456789abcdef",
    ],
)
def test_invalid_keys_are_rejected_by_every_operation(h: Harness, key: str) -> None:
    for call in (
        lambda: h.store.put(key, io.BytesIO(b"x")),
        lambda: h.store.put_bytes(key, b"x"),
        lambda: h.store.open(key),
        lambda: h.store.get_bytes(key),
        lambda: h.store.exists(key),
        lambda: h.store.stat(key),
        lambda: h.store.delete(key),
    ):
        with pytest.raises(ValueError):
            call()
    assert h.leftovers() == []


@pytest.mark.parametrize("prefix", ["/a", "../", "a//", "a\\b"])
def test_invalid_list_prefixes_are_rejected(h: Harness, prefix: str) -> None:
    with pytest.raises(ValueError):
        h.store.list(prefix)


@pytest.mark.parametrize("exc", [OSError("pg_dump pipe broke"), KeyboardInterrupt()], ids=["exception", "interrupt"])
@pytest.mark.parametrize("good_bytes", [100, 2 * PART + 100], ids=["single-part", "multi-part"])
def test_a_source_failing_mid_stream_leaves_nothing_behind(h: Harness, exc: BaseException, good_bytes: int) -> None:
    with pytest.raises(type(exc)) as raised:
        h.store.put(KEY, FailingSource(good_bytes, exc))  # type: ignore[arg-type]
    assert raised.value is exc  # the source's own error, not a store error
    assert not h.store.exists(KEY)
    assert h.leftovers() == []


@pytest.mark.parametrize("size", [100, 2 * PART + 100], ids=["single-part", "multi-part"])
@pytest.mark.parametrize("wrong", ["one-bit", "one-byte-short"])
def test_bytes_other_than_the_expected_ones_are_refused_and_nothing_is_stored(
    h: Harness, size: int, wrong: str
) -> None:
    data = os.urandom(size)
    sent = bytearray(data)
    if wrong == "one-bit":
        sent[size // 2] ^= 0x01
    else:
        del sent[-1]
    with pytest.raises(ChecksumMismatch) as refused:
        h.store.put(KEY, io.BytesIO(bytes(sent)), expect=Expected(size, sha256(data)))
    assert h.store.describe(KEY) in refused.value.message and "nothing stored" in refused.value.message
    assert "\n" not in refused.value.message
    assert not h.store.exists(KEY)
    assert h.leftovers() == []  # no temp file, no multipart upload left open


@pytest.mark.parametrize("size", [0, 2 * PART + 100], ids=["empty", "multi-part"])
def test_the_expected_bytes_are_stored(h: Harness, size: int) -> None:
    data = os.urandom(size)
    result = h.store.put(KEY, io.BytesIO(data), expect=Expected(size, sha256(data)))
    assert (result.size_bytes, result.sha256) == (size, sha256(data))
    assert h.store.get_bytes(KEY) == data


def test_check_writable_passes_and_leaves_nothing_behind(h: Harness) -> None:
    check_writable(h.store, "hms-primary/preflight")
    assert h.leftovers() == []
    assert h.store.list() == []


def test_describe_names_the_store_and_the_key(h: Harness) -> None:
    where = h.store.describe(KEY)
    assert where.endswith("/" + KEY)
    assert (str(h.root) if h.root else h.store.url) in where


def test_free_bytes_is_known_exactly_for_local_stores(h: Harness) -> None:
    free = h.store.free_bytes()
    if h.store.features.local_path is None:
        assert free is None
    else:
        assert isinstance(free, int) and free > 0


# -- file driver ---------------------------------------------------------------------------------


def test_file_store_creates_files_0600_and_directories_0700_even_with_umask_0(nas: Harness) -> None:
    old = os.umask(0)
    try:
        nas.store.put_bytes(KEY, b"secret")
    finally:
        os.umask(old)
    assert nas.root is not None
    path = nas.root / KEY
    assert path.stat().st_mode & 0o777 == 0o600
    for directory in path.relative_to(nas.root).parents:
        if directory != Path("."):
            assert (nas.root / directory).stat().st_mode & 0o777 == 0o700, directory


def test_file_store_list_ignores_temp_files_of_writes_in_flight_without_warning(
    nas: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert nas.root is not None
    nas.store.put_bytes("set/dump", b"x")
    (nas.root / "set" / ".dump.partial-0123456789abcdef").write_bytes(b"half")
    assert [o.key for o in nas.store.list()] == ["set/dump"]
    assert caplog.records == []  # a write in flight is normal, not a stray file


def test_file_store_delete_prunes_directories_it_leaves_empty(nas: Harness) -> None:
    assert nas.root is not None
    nas.store.put_bytes("hms-primary/logical/set1/dump", b"x")
    nas.store.put_bytes("hms-primary/logical/set2/dump", b"y")
    nas.store.delete("hms-primary/logical/set1/dump")
    assert sorted(p.name for p in (nas.root / "hms-primary" / "logical").iterdir()) == ["set2"]
    nas.store.delete("hms-primary/logical/set2/dump")
    assert list(nas.root.iterdir()) == []


def test_file_store_will_not_create_a_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "unmounted-nas"
    store = open_store(root.as_uri())
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.put_bytes(KEY, b"x")
    with pytest.raises(StoreUnavailable):
        store.list()
    assert not root.exists()


def test_file_store_maps_permission_denied_to_store_refused(nas: Harness) -> None:
    assert nas.root is not None
    nas.root.chmod(0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(StoreRefused):
                nas.store.put_bytes(KEY, b"x")
            return
        # Root ignores file modes: the write is made by a forked child that gave up root.
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 3
            try:
                os.setgid(65534)
                os.setuid(65534)
                nas.store.put_bytes(KEY, b"x")
                code = 1
            except StoreRefused:
                code = 0
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "a write without permission must raise StoreRefused"
    finally:
        nas.root.chmod(0o700)


def test_file_store_maps_a_file_in_the_way_of_a_directory_to_store_refused(nas: Harness) -> None:
    nas.store.put_bytes("hms-primary", b"not a directory")
    with pytest.raises(StoreRefused, match="in the way"):
        nas.store.put_bytes(KEY, b"x")


# -- s3 driver -----------------------------------------------------------------------------------


def test_s3_uploads_a_large_payload_as_a_multipart_upload(s3: Harness) -> None:
    s3.store.put(KEY, io.BytesIO(os.urandom(LARGE)))
    etag = s3.client.head_object(Bucket=s3.bucket, Key=f"hms/{KEY}")["ETag"]
    assert etag.strip('"').endswith("-3")  # S3's multipart ETag carries the part count


def test_s3_keeps_keys_under_the_store_prefix(s3: Harness) -> None:
    s3.store.put_bytes(KEY, b"x")
    assert s3.leftovers() == [f"hms/{KEY}"]
    assert s3.store.describe(KEY) == f"s3://{s3.bucket}/hms/{KEY}"


def test_s3_records_sha256_metadata_on_single_part_objects(s3: Harness) -> None:
    s3.store.put_bytes(KEY, b"payload")
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"hms/{KEY}")
    assert head["Metadata"]["sha256"] == sha256(b"payload")


@pytest.mark.parametrize("size", [10, PART + 1], ids=["single-part", "multi-part"])
def test_s3_sets_server_side_encryption_only_when_asked(moto: MotoServer, size: int) -> None:
    client = make_s3_client(moto.endpoint_url)
    bucket = new_bucket(client)
    plain = open_store(f"s3://{bucket}", s3_client=client, part_size_bytes=PART)
    encrypted = open_store(f"s3://{bucket}", s3_client=client, part_size_bytes=PART, sse="AES256")
    plain.put_bytes("plain", bytes(size))
    encrypted.put_bytes("encrypted", bytes(size))
    assert client.head_object(Bucket=bucket, Key="plain").get("ServerSideEncryption") is None
    assert client.head_object(Bucket=bucket, Key="encrypted")["ServerSideEncryption"] == "AES256"


def test_s3_upload_the_server_loses_fails_as_unavailable_and_leaves_nothing(s3: Harness) -> None:
    def server_forgets_the_upload() -> None:
        for upload in s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []):
            s3.client.abort_multipart_upload(Bucket=s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    class ForgettingSource(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() >= PART:  # the upload exists once the first part is read
                server_forgets_the_upload()
            return super().read(n)

    # AWS answers NoSuchUpload; moto answers HTTP 500. Both are worth a retry of the whole put.
    with pytest.raises(StoreUnavailable, match=KEY):
        s3.store.put(KEY, ForgettingSource(bytes(3 * PART)))
    assert s3.leftovers() == []


def test_s3_unreachable_endpoint_is_store_unavailable(tmp_path: Path) -> None:
    client = make_s3_client(f"http://127.0.0.1:{free_port()}", connect_timeout=1, retries={"max_attempts": 1})
    store = open_store("s3://hms-backups/prefix", s3_client=client, part_size_bytes=PART)
    started = time.monotonic()
    for call in (lambda: store.put_bytes(KEY, b"x"), lambda: store.list(), lambda: store.get_bytes(KEY)):
        with pytest.raises(StoreUnavailable, match="hms-backups"):
            call()
    assert time.monotonic() - started < 15


def test_s3_missing_bucket_is_store_refused_naming_the_bucket(moto: MotoServer) -> None:
    client = make_s3_client(moto.endpoint_url)
    store = open_store("s3://no-such-bucket-here/prefix", s3_client=client, part_size_bytes=PART)
    for call in (lambda: store.put_bytes(KEY, b"x"), lambda: store.list()):
        with pytest.raises(StoreRefused, match="no-such-bucket-here") as refused:
            call()
        assert refused.value.hint is not None
    with pytest.raises(StoreRefused, match="no-such-bucket-here"):
        check_writable(store, "preflight")


# -- opening stores ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "file://nas-host/backups", "s3://bucket?x=1", "relative/path", "s3:///prefix-only"]
)
def test_open_store_rejects_urls_it_cannot_serve(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url, s3_client=object())


def test_open_store_needs_a_client_for_s3() -> None:
    with pytest.raises(ValueError, match="s3_client"):
        open_store("s3://hms-backups")


def test_open_store_rejects_parts_smaller_than_s3_allows() -> None:
    with pytest.raises(ValueError, match="part_size_bytes"):
        open_store("s3://hms-backups", s3_client=object(), part_size_bytes=2**20)


def test_file_store_url_round_trips_through_open_store(nas: Harness) -> None:
    assert nas.root is not None
    assert nas.store.url == nas.root.as_uri()
    assert nas.store.features.local_path == nas.root and nas.store.features.needs_fsync


def test_importing_the_store_package_does_not_load_boto() -> None:
    code = "import sys, hms_dr.store; sys.exit('botocore' in sys.modules or 'boto3' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
