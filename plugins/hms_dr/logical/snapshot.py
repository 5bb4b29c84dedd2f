"""Baselines and every pg_dump of one run, taken in ONE exported snapshot.

A REPEATABLE READ transaction exports its snapshot; the whole-database dump (custom format, or
directory format with pg_dump -j whose every worker takes the snapshot: ``hms_dr.logical.directory``,
chosen by ``LogicalBackupPolicy.dump_format_for`` from the database's size), the schema-only
export and the data-only export all dump it, while the same transaction counts every table and
fingerprints the policy's views. Under live writes the restore must therefore match the
baselines exactly. Nothing here writes a manifest: the caller publishes after reading back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from hms_dr import baseline, sqlfiles
from hms_dr.catalog import key_for
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home, gpg_version
from hms_dr.database import connect
from hms_dr.logical.content import record_content
from hms_dr.logical.directory import dump_directory
from hms_dr.logical.dump import DumpResult, dump_specs, payload_name, stream_dump
from hms_dr.logical.run import LogicalRun, StoredDump, StoredPayload
from hms_dr.manifest import BackupKind, new_backup_set_id
from hms_dr.pginstalls import client_install
from hms_dr.pgtools import ConnectionInfo, exact_table_pattern
from hms_dr.policy import CompressionMethod, CompressionPolicy, LogicalBackupPolicy, StagingPolicy
from hms_dr.publish import remove_unpublished
from hms_dr.store import Store
from hms_dr.toolversions import zstd_version

log = logging.getLogger(__name__)


def take_logical_backup(
    conn: ConnectionInfo,
    store: Store,
    key: EncryptionKey,
    *,
    cluster: str,
    logical_backup: LogicalBackupPolicy,
    compression: CompressionPolicy,
    staging: StagingPolicy,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> LogicalRun:
    """Baselines + every dump of the run in one snapshot, streamed, verified and stored.

    Returns what the manifests record (a record that crosses XCom); stores no manifest. On any failure the
    payloads stored by this call are deleted before the error propagates. ``cluster`` is the
    policy's cluster name; the rest are the policy's sections of the same name.
    """
    started_at = now()
    backup_set_id = new_backup_set_id(started_at)
    schemas = logical_backup.schemas
    stored_keys: list[str] = []
    results: list[DumpResult] = []
    baseline_outcome: dict[str, Any] = {}

    with connect(conn, autocommit=False) as connection, gpg_home(staging.dir) as home:
        cursor = connection.cursor()
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(sqlfiles.text("export_snapshot"))
        snapshot_id, wal_lsn, txid_snapshot, taken_at = cursor.fetchone()
        cursor.execute(sqlfiles.text("server_identity"))
        version_num, version, in_recovery, _, database_size, system_identifier = cursor.fetchone()
        server = {
            "version": version,
            "version_num": version_num,
            "in_recovery": in_recovery,
            "database_size_bytes": database_size,
            "system_identifier": system_identifier,
        }
        # pg_dump of the server's major or newer, chosen for this server (never an older one).
        pg = client_install(version_num // 10000, server=f"the server at {conn.host}:{conn.port} ({version})")
        log.info("backup set %s: snapshot %s exported at WAL %s", backup_set_id, snapshot_id, wal_lsn)
        dump_format = logical_backup.dump_format_for(database_size)
        log.info("whole-database dump format: %s", logical_backup.describe_format_choice(database_size))

        # The table list and the relations are resolved first (quick catalog queries); the
        # counting and fingerprinting then run on this connection while the dumps stream.
        baseline.apply_fingerprint_settings(cursor)
        # Fingerprinting reads whole views, and on the 1.2 GB bench database it is the longest
        # part of the dump step: room to hash and sort in memory instead of spilling to disk.
        # One session, so the memory is bounded.
        cursor.execute("SELECT set_config('work_mem', '64MB', true)")
        # No parallel workers for the fingerprints: they run beside the dumps, and on the bench's
        # two cores the workers took 9 CPU-s from pg_dump, zstd and the content digest, which set
        # the backup's pace. Production pays the least CPU with one process per query.
        cursor.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
        tables = baseline.list_tables(cursor, schemas)
        views = baseline.resolve_relations(cursor, logical_backup.baseline_views, purpose="baseline view")
        data_tables = baseline.resolve_relations(cursor, logical_backup.data_only_tables, purpose="data-only table")
        data_tables, data_leaves = with_partitions(cursor, data_tables)

        def count_baselines() -> None:
            try:
                # Row counts come from the dump's own content digests: no second read of each table.
                baseline_outcome["baselines"] = baseline.measure(cursor, tables, views, count_tables=False)
            except BaseException as exc:  # re-raised in the main thread
                baseline_outcome["error"] = exc

        counter = threading.Thread(target=count_baselines, name="baselines", daemon=True)
        counter.start()
        try:
            check_encryption_key(home, key)  # imports the public key into this private gpg home
            encryption = encrypt_stage(home, key)
            for spec in dump_specs(logical_backup, dump_format):
                if spec.kind is BackupKind.DATA:
                    # pg_dump gets the names resolved in the snapshot, not the policy's spelling.
                    spec = replace(
                        spec,
                        tables=tuple(exact_table_pattern(s, n) for s, n in data_leaves),
                        expect_table_data=tuple(baseline.qualified(s, n) for s, n in data_leaves),
                    )
                elif spec.kind is BackupKind.LOGICAL:
                    # A partitioned table's rows are its partitions': it has no TABLE DATA entry of its own.
                    spec = replace(
                        spec, expect_table_data=tuple(name for name, t in tables.items() if t["relkind"] != "p")
                    )
                if spec.archive_format == "d":
                    results.append(
                        dump_directory(
                            spec,
                            conn=conn,
                            pg=pg,
                            snapshot_id=snapshot_id,
                            schemas=schemas,
                            compression=compression,
                            encryption_stage=encryption,
                            store=store,
                            key_of=partial(key_for, cluster, spec.kind, backup_set_id),
                            stored_keys=stored_keys,
                            staging_dir=staging.dir,
                            jobs=logical_backup.dump_jobs,
                            database_size_bytes=database_size,
                        )
                    )
                    continue
                payload_key = key_for(cluster, spec.kind, backup_set_id, payload_name(spec, compression))
                stored_keys.append(payload_key)
                results.append(
                    stream_dump(
                        spec,
                        conn=conn,
                        pg=pg,
                        snapshot_id=snapshot_id,
                        schemas=schemas,
                        compression=compression,
                        encryption_stage=encryption,
                        store=store,
                        key=payload_key,
                        expected_bytes=database_size if spec.kind is BackupKind.LOGICAL else None,
                    )
                )
            counter.join()
            if "error" in baseline_outcome:
                raise baseline_outcome["error"]
            whole = next(r.content for r in results if r.kind is BackupKind.LOGICAL)
            assert whole is not None  # the whole dump is always digested
            record_content(baseline_outcome["baselines"], whole)
            connection.rollback()
        except BaseException:
            remove_unpublished(store, stored_keys)
            raise

    finished_at = now()
    baselines = baseline_outcome["baselines"]
    dump_version = pg.version
    return LogicalRun(
        backup_set_id=backup_set_id,
        cluster=cluster,
        database=conn.dbname,
        started_at=started_at,
        finished_at=finished_at,
        server=server,
        data_only_tables=[baseline.qualified(s, n) for s, n in data_tables],
        snapshot={"wal_lsn": wal_lsn, "txid_snapshot": txid_snapshot, "taken_at": taken_at.isoformat()},
        tools={"pg_dump": dump_version, "gpg": gpg_version(), "zstd": _zstd_version(compression)},
        compression={"method": compression.method.value, "level": compression.level},
        encryption={"mode": key.mode.value, "key_id": key.key_id, "cipher": "AES256"},
        baselines=baselines,
        dumps=[
            StoredDump(
                kind=r.kind,
                archive_format=r.archive_format,
                payloads=[StoredPayload(key_for(cluster, r.kind, backup_set_id, p.name), p) for p in r.payloads],
                verification=r.verification,
                seconds=round(r.seconds, 3),
            )
            for r in results
        ],
    )


def with_partitions(cursor: Any, tables: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The data-only tables with the partitions of each partitioned one (every level), and the
    tables among them that hold rows: what pg_dump is given, since --table=<parent> dumps no
    partition's rows in PostgreSQL 15."""
    every: list[tuple[str, str]] = []
    leaves: list[tuple[str, str]] = []
    for schema, name in tables:
        tree = baseline.partition_tree(cursor, schema, name) or [(schema, name, True)]
        every.extend((s, n) for s, n, _ in tree)
        leaves.extend((s, n) for s, n, leaf in tree if leaf)
    return list(dict.fromkeys(every)), list(dict.fromkeys(leaves))


def _zstd_version(compression: CompressionPolicy) -> str | None:
    return zstd_version() if compression.method is CompressionMethod.ZSTD else None
