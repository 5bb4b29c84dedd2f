"""One pg_dump streamed into the store: ``pg_dump | [compressor] | gpg``, verified on the way.

What a run dumps (``dump_specs``), how each payload is named and compressed, and
``stream_dump``, which runs one pipeline into ``store.put`` and returns the payload's proof.
A failed or killed stage makes the upload fail, so no truncated payload is ever committed.
A directory-format whole-database dump is ``hms_dr.logical.directory``'s; it names and
compresses its files with the same functions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from hms_dr.errors import HmsDrError
from hms_dr.logical.content import ContentDigests, dump_session_options
from hms_dr.logical.verify import StreamVerifier
from hms_dr.manifest import CUSTOM_ARCHIVE, BackupKind, Payload
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo, pg_dump_argv, tool_env
from hms_dr.policy import CompressionMethod, CompressionPolicy, DumpFormat, LogicalBackupPolicy
from hms_dr.progress import ProgressLog
from hms_dr.store import Store
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DumpSpec:
    """One pg_dump of the run: what it dumps, how its payload is named, what it must contain."""

    kind: BackupKind
    label: str
    archive_format: str  # "c" custom, "p" plain SQL, "d" directory (hms_dr.logical.directory)
    schema_only: bool = False
    data_only: bool = False
    tables: tuple[str, ...] = ()
    expect_table_data: tuple[str, ...] = ()  # filled in once the baselines know the tables
    # The whole dump's rows are digested for the baselines; the exports are not restore-tested, and
    # digesting the data-only export again would cost production-host CPU for nothing checked later.
    digest_content: bool = False


@dataclass
class DumpResult:
    kind: BackupKind
    payloads: list[Payload]  # one, or one per file of a directory dump
    verification: dict[str, Any]
    seconds: float
    content: ContentDigests | None  # the whole dump: what every table and the large objects hold
    archive_format: str | None = None  # the manifest's archive_format; None for a plain SQL export


def compression_stage(compression: CompressionPolicy, archive_format: str) -> Stage | None:
    """The external compressor after the verifier's tap, if any.

    Custom archives under gzip compress their data blocks inside pg_dump (-Z); everything else
    (plain SQL, each -Z0 file of a directory dump) is compressed outside, after the tap, so the
    verifier and plain_sha256 see the plain dump.
    """
    if compression.method is CompressionMethod.ZSTD:
        return Stage("zstd", ["zstd", "-q", "-c", f"-{compression.level}", f"-T{compression.threads}"])
    if compression.method is CompressionMethod.GZIP and archive_format in ("p", "d"):
        return Stage("gzip", ["gzip", "-c", f"-{max(compression.level, 1)}"])
    return None


def pg_dump_compress_level(compression: CompressionPolicy, archive_format: str) -> int:
    return compression.level if compression.method is CompressionMethod.GZIP and archive_format == "c" else 0


def payload_suffix(archive_format: str, compression: CompressionPolicy) -> str:
    """What follows a payload's plain name: the compressor's extension, then .gpg."""
    if compression.method is CompressionMethod.ZSTD:
        return ".zst.gpg"
    if compression.method is CompressionMethod.GZIP and archive_format in ("p", "d"):
        return ".gz.gpg"  # custom archives compress their data blocks inside the archive
    return ".gpg"


def payload_name(spec: DumpSpec, compression: CompressionPolicy) -> str:
    stem = {"c": f"{spec.label}.pgdump", "p": f"{spec.label}.sql"}[spec.archive_format]
    return stem + payload_suffix(spec.archive_format, compression)


def dump_specs(logical_backup: LogicalBackupPolicy, dump_format: DumpFormat = DumpFormat.CUSTOM) -> list[DumpSpec]:
    """The dumps of one run, in the order they stream: whole database (in ``dump_format``,
    custom or directory), schema, data-only tables."""
    whole = "d" if dump_format is DumpFormat.DIRECTORY else "c"
    specs = [
        DumpSpec(BackupKind.LOGICAL, "dump", whole, digest_content=True),
        DumpSpec(BackupKind.SCHEMA, "schema", "p", schema_only=True),
    ]
    if logical_backup.data_only_tables:
        specs.append(DumpSpec(BackupKind.DATA, "data", "c", data_only=True, tables=logical_backup.data_only_tables))
    return specs


def stream_dump(
    spec: DumpSpec,
    *,
    conn: ConnectionInfo,
    pg: PgInstall,
    snapshot_id: str,
    schemas: tuple[str, ...],
    compression: CompressionPolicy,
    encryption_stage: Stage,
    store: Store,
    key: str,
    expected_bytes: int | None = None,
) -> DumpResult:
    """pg_dump | [zstd] | gpg into the store under ``key``, verified and hashed on the way; a
    progress line every 15 s, with the share of ``expected_bytes`` (the database's size, for the
    whole-database dump) and an ETA when it is given."""
    started = time.monotonic()
    argv = pg_dump_argv(
        pg,
        snapshot=snapshot_id,
        archive_format=spec.archive_format,
        compress_level=pg_dump_compress_level(compression, spec.archive_format),
        schema_only=spec.schema_only,
        data_only=spec.data_only,
        tables=spec.tables,
        schemas=() if spec.tables else schemas,
    )
    # Fixed session settings, so the content digests of this dump and of a restored copy's compare.
    stages = [Stage("pg_dump", argv, env={**tool_env(conn), "PGOPTIONS": dump_session_options()})]
    compressor = compression_stage(compression, spec.archive_format)
    if compressor is not None:
        stages.append(compressor)
    stages.append(encryption_stage)
    verifier = StreamVerifier(spec.archive_format, pg, digest_content=spec.digest_content)
    verifier.start()
    progress = ProgressLog(
        f"pg_dump into {store.describe(key)}", lambda: verifier.plain_size, expected_bytes=expected_bytes
    )
    try:
        with progress, Pipeline(stages, tap=verifier.feed, tap_after=1) as pipeline:
            stored = store.put(key, pipeline.output)  # type: ignore[arg-type]
    except BaseException:
        verifier.kill()
        raise
    try:
        verification = verifier.finish(spec.expect_table_data, store.describe(key))
    except HmsDrError:
        store.delete(key)  # a payload that failed verification must not linger as if it were good
        raise
    seconds = time.monotonic() - started
    payload = Payload(
        name=key.rsplit("/", 1)[-1],
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        format="pg_dump_custom" if spec.archive_format == "c" else "pg_dump_plain",
        plain_size_bytes=verifier.plain_size,
        plain_sha256=verifier.plain_hash.hexdigest(),
    )
    log.info(
        "stored %s: %s (plain dump %s, compression ratio %.2f) in %.1f s, %s of plain dump",
        store.describe(key),
        human_bytes(stored.size_bytes),
        human_bytes(verifier.plain_size),
        verifier.plain_size / max(stored.size_bytes, 1),
        seconds,
        human_rate(verifier.plain_size, seconds),
    )
    archive_format = CUSTOM_ARCHIVE if spec.archive_format == "c" else None
    return DumpResult(spec.kind, [payload], verification, seconds, verifier.content, archive_format)
