"""A moto S3 server on 127.0.0.1 that stands in for AWS S3 in the sandbox and the tests.

moto keeps buckets and objects in memory: they are gone when the server stops, so the sandbox
creates its buckets again after every start.
"""

from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from hms_dr.errors import StoreRefused, StoreUnavailable, ToolFailed
from hms_sandbox.detached import DetachedProcess

log = logging.getLogger(__name__)

S3_REGION = "us-east-1"


def moto_server_executable() -> Path:
    """The ``moto_server`` script installed beside the running Python interpreter."""
    return Path(sys.executable).parent / "moto_server"


@dataclass
class MotoServer:
    """One moto server process, detached from its starter, with its pid and log files in ``workdir``."""

    port: int
    workdir: Path

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, e.g. ``http://127.0.0.1:5000``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> DetachedProcess:
        """The detached moto process: pid and log files in ``workdir``."""
        return DetachedProcess("moto", self.workdir, marker=b"moto")

    @property
    def log_file(self) -> Path:
        return self.process.log_file

    def pid(self) -> int | None:
        """The pid of the running server, or None."""
        return self.process.pid()

    def is_running(self) -> bool:
        """Tell whether the server process is alive."""
        return self.pid() is not None

    def answers(self) -> bool:
        """Tell whether the server answers HTTP requests."""
        try:
            with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1) as response:
                return bool(200 <= response.status < 500)
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    def start(self, timeout_s: float = 30) -> None:
        """Start the server in its own session and wait until it answers; no-op when running."""
        if self.is_running():
            log.info("moto already running at %s", self.endpoint_url)
            return
        executable = moto_server_executable()
        if not executable.exists():
            raise ToolFailed(
                "moto_server", None, f"not found at {executable}", hint="pip install 'moto[server]' into this venv"
            )
        pid = self.process.start(
            [str(executable), "-H", "127.0.0.1", "-p", str(self.port)], answers=self.answers, timeout_s=timeout_s
        )
        log.info("moto S3 server running at %s (pid %d)", self.endpoint_url, pid)

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the server (SIGTERM, then SIGKILL); no-op when it is not running."""
        if self.process.stop(timeout_s):
            log.info("moto S3 server at %s stopped", self.endpoint_url)


def create_buckets(
    endpoint_url: str,
    names: Sequence[str],
    *,
    access_key: str,
    secret_key: str,
    object_lock_buckets: Collection[str] = (),
) -> list[str]:
    """Create the buckets that do not exist yet; return the names created.

    :param object_lock_buckets: the names among ``names`` created with Object Lock enabled.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=S3_REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )
    try:
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    except (BotoCoreError, ClientError) as exc:
        raise StoreUnavailable(f"cannot list buckets at {endpoint_url}: {exc}") from exc
    created: list[str] = []
    for name in names:
        if name in existing:
            log.info("bucket %s already exists at %s", name, endpoint_url)
            continue
        try:
            if name in object_lock_buckets:
                client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
            else:
                client.create_bucket(Bucket=name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                log.info("bucket %s already exists at %s", name, endpoint_url)
                continue
            raise StoreRefused(f"cannot create bucket {name} at {endpoint_url}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"cannot reach the S3 endpoint {endpoint_url} to create bucket {name}: {exc}"
            ) from exc
        created.append(name)
        log.info(
            "created bucket %s at %s%s", name, endpoint_url, " with object lock" if name in object_lock_buckets else ""
        )
    return created
