"""A logical backup: baselines and every pg_dump of one run taken in ONE exported snapshot.

The whole-database dump (``pg_dump -Fc``), the schema-only export and the data-only export of
the policy's tables all use the snapshot exported by a REPEATABLE READ transaction, and the
baselines are counted in that same transaction while the dump streams. Each dump flows
``pg_dump | [zstd] | gpg`` straight into the store, tapped on the way to hash the plain bytes
and to let ``pg_restore --list`` read the archive. Nothing is staged on disk and nothing here
writes a manifest: the caller does, after checking the stored bytes.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from hms_dr import baseline, sqlfiles
from hms_dr.catalog import key_for
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home, gpg_version
from hms_dr.database import connect
from hms_dr.errors import BackupVerificationFailed, HmsDrError
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.pgtools import (
    ConnectionInfo,
    parse_restore_list,
    pg_dump_argv,
    pg_restore_list_argv,
    tool_env,
    tool_version,
)
from hms_dr.policy import CompressionMethod, CompressionPolicy, Policy
from hms_dr.store import Store
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0
PLAIN_DUMP_END_MARK = b"-- PostgreSQL database dump complete"


@dataclass(frozen=True)
class DumpSpec:
    """One pg_dump of the run: what it dumps, how its payload is named, what it must contain."""

    kind: BackupKind
    label: str
    archive_format: str  # "c" custom, "p" plain SQL
    schema_only: bool = False
    data_only: bool = False
    tables: tuple[str, ...] = ()
    expect_table_data: tuple[str, ...] = ()  # filled in once the baselines know the tables


@dataclass
class DumpResult:
    kind: BackupKind
    payload: Payload
    verification: dict[str, Any]
    seconds: float


@dataclass
class _Verifier:
    """Reads the plain archive as it streams past: pg_restore --list for custom archives, the
    closing line for plain SQL."""

    archive_format: str
    process: subprocess.Popen[bytes] | None = None
    listing: bytes = b""
    stderr: bytes = b""
    tail: bytes = b""
    accepting: bool = True
    _reader: threading.Thread | None = None
    plain_hash: Any = field(default_factory=hashlib.sha256)
    plain_size: int = 0

    def start(self) -> None:
        if self.archive_format != "c":
            return
        self.process = subprocess.Popen(
            pg_restore_list_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._collect, name="pg_restore-list", daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process is not None and self.process.stdout is not None and self.process.stderr is not None
        self.listing = self.process.stdout.read()
        self.stderr = self.process.stderr.read()

    def feed(self, chunk: bytes) -> None:
        self.plain_hash.update(chunk)
        self.plain_size += len(chunk)
        self.tail = (self.tail + chunk)[-4096:]
        if self.process is None or not self.accepting:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(chunk)
        except BrokenPipeError:
            # pg_restore --list stops reading once it has the table of contents.
            self.accepting = False

    def finish(self, expect_table_data: tuple[str, ...], label: str) -> dict[str, Any]:
        if self.process is None:
            if self.plain_size == 0 or PLAIN_DUMP_END_MARK not in self.tail:
                raise BackupVerificationFailed(f"{label}: the plain SQL dump does not end with pg_dump's completion line")
            return {"check": "plain dump completion line", "plain_size_bytes": self.plain_size}
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        code = self.process.wait()
        if self._reader is not None:
            self._reader.join()
        if code != 0:
            last = self.stderr.decode("utf-8", "replace").strip().splitlines()
            raise BackupVerificationFailed(f"{label}: pg_restore --list failed: {last[-1] if last else f'exit {code}'}")
        entries = parse_restore_list(self.listing.decode("utf-8", "replace"))
        listed = {f"{schema}.{name}" for description, schema, name in entries if description == "TABLE DATA"}
        missing = [table for table in expect_table_data if table not in listed]
        if missing:
            raise BackupVerificationFailed(
                f"{label}: pg_restore --list does not list the data of {len(missing)} table(s): {', '.join(missing[:5])}"
            )
        return {"check": "pg_restore --list", "toc_entries": len(entries), "tables_listed": len(listed)}

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def compression_stage(compression: CompressionPolicy, archive_format: str) -> Stage | None:
    """The external compressor after the verifier's tap, if any.

    Custom archives under gzip compress their data blocks inside pg_dump (-Z); everything else
    is compressed outside, after the tap, so the verifier and plain_sha256 see the plain dump.
    """
    if compression.method is CompressionMethod.ZSTD:
        return Stage("zstd", ["zstd", "-q", "-c", f"-{compression.level}", f"-T{compression.threads}"])
    if compression.method is CompressionMethod.GZIP and archive_format == "p":
        return Stage("gzip", ["gzip", "-c", f"-{max(compression.level, 1)}"])
    return None


def pg_dump_compress_level(compression: CompressionPolicy, archive_format: str) -> int:
    return compression.level if compression.method is CompressionMethod.GZIP and archive_format == "c" else 0


def payload_name(spec: DumpSpec, compression: CompressionPolicy) -> str:
    stem = {"c": f"{spec.label}.pgdump", "p": f"{spec.label}.sql"}[spec.archive_format]
    if compression.method is CompressionMethod.ZSTD:
        stem += ".zst"
    elif compression.method is CompressionMethod.GZIP and spec.archive_format == "p":
        stem += ".gz"  # custom archives compress their data blocks inside the archive
    return stem + ".gpg"


def dump_specs(policy: Policy) -> list[DumpSpec]:
    """The dumps of one run, in the order they stream: whole database, schema, data-only tables."""
    specs = [
        DumpSpec(BackupKind.LOGICAL, "dump", "c"),
        DumpSpec(BackupKind.SCHEMA, "schema", "p", schema_only=True),
    ]
    if policy.logical_backup.data_only_tables:
        specs.append(DumpSpec(BackupKind.DATA, "data", "c", data_only=True, tables=policy.logical_backup.data_only_tables))
    return specs


def stream_dump(
    spec: DumpSpec,
    *,
    conn: ConnectionInfo,
    snapshot_id: str,
    schemas: tuple[str, ...],
    compression: CompressionPolicy,
    encryption_stage: Stage,
    store: Store,
    key: str,
) -> DumpResult:
    """pg_dump | [zstd] | gpg into the store under ``key``, verified and hashed on the way."""
    started = time.monotonic()
    argv = pg_dump_argv(
        snapshot=snapshot_id,
        archive_format=spec.archive_format,
        compress_level=pg_dump_compress_level(compression, spec.archive_format),
        schema_only=spec.schema_only,
        data_only=spec.data_only,
        tables=spec.tables,
        schemas=() if spec.tables else schemas,
    )
    stages = [Stage("pg_dump", argv, env=tool_env(conn))]
    compressor = compression_stage(compression, spec.archive_format)
    if compressor is not None:
        stages.append(compressor)
    stages.append(encryption_stage)
    verifier = _Verifier(spec.archive_format)
    verifier.start()
    progress = _ProgressLog(store.describe(key), lambda: verifier.plain_size, started)
    try:
        with Pipeline(stages, tap=verifier.feed, tap_after=1) as pipeline:
            stored = store.put(key, pipeline.output, progress=progress)  # type: ignore[arg-type]
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
        store.describe(key), human_bytes(stored.size_bytes), human_bytes(verifier.plain_size),
        verifier.plain_size / max(stored.size_bytes, 1), seconds, human_rate(verifier.plain_size, seconds),
    )
    return DumpResult(spec.kind, payload, verification, seconds)


class _ProgressLog:
    """The store's progress callback: a line every PROGRESS_EVERY_S seconds with sizes and speed."""

    def __init__(self, where: str, plain_bytes: Callable[[], int], started: float) -> None:
        self.where = where
        self.plain_bytes = plain_bytes
        self.started = started
        self.last = started

    def __call__(self, stored_bytes: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        elapsed = now - self.started
        log.info(
            "%s: %s dumped, %s stored, %.0f s, %s",
            self.where, human_bytes(self.plain_bytes()), human_bytes(stored_bytes), elapsed,
            human_rate(self.plain_bytes(), elapsed),
        )


def take_logical_backup(
    conn: ConnectionInfo,
    policy: Policy,
    store: Store,
    key: EncryptionKey,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> dict[str, Any]:
    """Baselines + every dump of the run in one snapshot, streamed, verified and stored.

    Returns plain data (fits XCom) for the manifests; stores no manifest. On any failure the
    payloads stored by this call are deleted before the error propagates.
    """
    started_at = now()
    backup_set_id = new_backup_set_id(started_at)
    cluster = policy.cluster.name
    schemas = policy.logical_backup.schemas
    stored_keys: list[str] = []
    results: list[DumpResult] = []
    baseline_outcome: dict[str, Any] = {}

    with connect(conn, autocommit=False) as connection, gpg_home(policy.staging.dir) as home:
        cursor = connection.cursor()
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(sqlfiles.text("export_snapshot"))
        snapshot_id, wal_lsn, txid_snapshot, taken_at = cursor.fetchone()
        cursor.execute(sqlfiles.text("server_identity"))
        version_num, version, in_recovery, _, database_size, system_identifier = cursor.fetchone()
        server = {
            "version": version, "version_num": version_num, "in_recovery": in_recovery,
            "database_size_bytes": database_size, "system_identifier": system_identifier,
        }
        log.info("backup set %s: snapshot %s exported at WAL %s", backup_set_id, snapshot_id, wal_lsn)

        # The table list and the relations are resolved first (quick catalog queries); the
        # counting and fingerprinting then run on this connection while the dumps stream.
        baseline.apply_fingerprint_settings(cursor)
        tables = baseline.list_tables(cursor, schemas)
        views = baseline.resolve_relations(cursor, policy.logical_backup.baseline_views, purpose="baseline view")
        data_tables = baseline.resolve_relations(cursor, policy.logical_backup.data_only_tables, purpose="data-only table")

        def count_baselines() -> None:
            try:
                baseline_outcome["baselines"] = baseline.measure(cursor, tables, views)
            except BaseException as exc:  # re-raised in the main thread
                baseline_outcome["error"] = exc

        counter = threading.Thread(target=count_baselines, name="baselines", daemon=True)
        counter.start()
        try:
            check_encryption_key(home, key)  # imports the public key into this private gpg home
            encryption = encrypt_stage(home, key)
            for spec in dump_specs(policy):
                expected = tuple(tables) if spec.kind is BackupKind.LOGICAL else ()
                if spec.kind is BackupKind.DATA:
                    expected = tuple(baseline.qualified(s, n) for s, n in data_tables)
                spec = replace(spec, expect_table_data=expected)
                payload_key = key_for(cluster, spec.kind, backup_set_id, payload_name(spec, policy.compression))
                stored_keys.append(payload_key)
                results.append(
                    stream_dump(
                        spec, conn=conn, snapshot_id=snapshot_id, schemas=schemas, compression=policy.compression,
                        encryption_stage=encryption, store=store, key=payload_key,
                    )
                )
            counter.join()
            if "error" in baseline_outcome:
                raise baseline_outcome["error"]
            connection.rollback()
        except BaseException:
            _delete_quietly(store, stored_keys)
            raise

    finished_at = now()
    baselines = baseline_outcome["baselines"]
    _, dump_version = tool_version("pg_dump")
    return {
        "backup_set_id": backup_set_id,
        "cluster": cluster,
        "database": conn.dbname,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "server": server,
        "data_only_tables": [baseline.qualified(s, n) for s, n in data_tables],
        "snapshot": {"wal_lsn": wal_lsn, "txid_snapshot": txid_snapshot, "taken_at": taken_at.isoformat()},
        "tools": {"pg_dump": dump_version, "gpg": gpg_version(), "zstd": _zstd_version(policy.compression)},
        "compression": {"method": policy.compression.method.value, "level": policy.compression.level},
        "encryption": {"mode": key.mode.value, "key_id": key.key_id, "cipher": "AES256"},
        "baselines": baselines,
        "dumps": [
            {
                "kind": r.kind.value,
                "key": key_for(cluster, r.kind, backup_set_id, r.payload.name),
                "payload": r.payload.to_dict(),
                "verification": r.verification,
                "seconds": round(r.seconds, 3),
            }
            for r in results
        ],
    }


def _zstd_version(compression: CompressionPolicy) -> str | None:
    if compression.method is not CompressionMethod.ZSTD:
        return None
    done = subprocess.run(["zstd", "--version"], capture_output=True, text=True, timeout=30)
    words = done.stdout.replace(",", " ").split()
    return next((w.lstrip("v") for w in words if w.startswith("v") and w[1:2].isdigit()), done.stdout.strip())


def _delete_quietly(store: Store, keys: list[str]) -> None:
    for key in keys:
        try:
            if store.exists(key):
                store.delete(key)
                log.info("removed %s left by the failed run", store.describe(key))
        except HmsDrError as exc:
            log.warning("could not remove %s (retention will): %s", store.describe(key), exc)


def manifest_extra(result: Mapping[str, Any], dump: Mapping[str, Any]) -> dict[str, Any]:
    """The kind-specific fields of one set's manifest, from what take_logical_backup returned.

    The whole-database set carries every baseline; the data-only set the baselines of its own
    tables; the schema-only set the table structure (columns) without row counts.
    """
    kind = BackupKind(dump["kind"])
    baselines = result["baselines"]
    if kind is BackupKind.LOGICAL:
        kind_baselines: dict[str, Any] = baselines
    elif kind is BackupKind.DATA:
        listed = set(result.get("data_only_tables", ()))
        kind_baselines = {**baselines, "tables": {n: t for n, t in baselines["tables"].items() if n in listed}, "views": {}}
    else:
        kind_baselines = {
            **baselines,
            "tables": {n: {"columns": t["columns"], "relkind": t["relkind"]} for n, t in baselines["tables"].items()},
            "views": {},
        }
    extra: dict[str, Any] = {
        "database": result["database"],
        "server": result["server"],
        "tools": result["tools"],
        "snapshot": result["snapshot"],
        "compression": result["compression"],
        "encryption": result["encryption"],
        "verification": dump["verification"],
        "baselines": kind_baselines,
    }
    if kind is not BackupKind.LOGICAL:
        extra["parent"] = {"kind": BackupKind.LOGICAL.value, "backup_set_id": result["backup_set_id"]}
    return extra
