"""The weekly base backup: pg_basebackup, proven by pg_verifybackup, compressed, encrypted, stored.

``take_base_backup`` runs every step in one call, because they share a staging directory that
must not outlive the run:

1. preflight: tools, the role's REPLICATION, WAL senders, staging space (~2 x the cluster), the key;
2. ``pg_basebackup -Ft -X stream --manifest-checksums=SHA256`` as the replication role into a
   private staging directory (base.tar, pg_wal.tar, backup_manifest, <oid>.tar per tablespace);
3. ``pg_verifybackup`` checks them against the manifest (on an extracted copy before 18, in place from 18);
4. each file streams ``zstd | gpg`` into the store while its plain bytes are hashed, is read back
   against its sha256, and only then is ``manifest.json`` written (``publish_set``).

Compression happens here, on the worker, after verification, rather than with pg_basebackup's
server-side ``--compress``: pg_verifybackup needs the plain tars anyway, and the database host
keeps its CPU. A failure at any step removes what this run stored and the staging directory:
nothing is left that looks like a set.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import key_for, preflight_prefix
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home, gpg_version
from hms_dr.errors import PreflightFailed
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.backup_manifest import check_label_matches_manifest, parse_backup_label, parse_backup_manifest
from hms_dr.physical.pgbasebackup import run_pg_basebackup
from hms_dr.physical.preflight import SourceCluster, check_source_and_staging
from hms_dr.physical.staging import staged_files, store_staged_file, zstd_stage
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, BASE_TAR, Verification, read_backup_label, verify_tar_backup
from hms_dr.publish import publish_set, remove_unpublished, verify_stored_payload
from hms_dr.store import check_writable
from hms_dr.toolversions import zstd_version
from hms_dr.units import human_bytes
from hms_dr.wal.names import format_lsn, last_wal_segment_name, wal_segment_name

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

CIPHER = "AES256"


def label_for(backup_set_id: str) -> str:
    return f"hms-dr-{backup_set_id}"


def describe_backup(tar_dir: Path, source: SourceCluster, verification: Verification, *, label: str) -> dict[str, Any]:
    """The manifest's ``base_backup`` fields from PostgreSQL's backup_manifest and backup_label."""
    pg_manifest = parse_backup_manifest((tar_dir / BACKUP_MANIFEST).read_bytes(), where=str(tar_dir / BACKUP_MANIFEST))
    backup_label = parse_backup_label(read_backup_label(tar_dir / BASE_TAR), where=str(tar_dir / BASE_TAR))
    check_label_matches_manifest(backup_label, pg_manifest, where=str(tar_dir))
    segment_size = source.wal_segment_size_bytes
    return {
        "start_lsn": format_lsn(pg_manifest.start_lsn),
        "stop_lsn": format_lsn(pg_manifest.stop_lsn),
        "timeline": pg_manifest.start_timeline,
        "stop_timeline": pg_manifest.stop_timeline,
        "start_wal_file": wal_segment_name(pg_manifest.start_timeline, pg_manifest.start_lsn, segment_size),
        "stop_wal_file": last_wal_segment_name(pg_manifest.stop_timeline, pg_manifest.stop_lsn, segment_size),
        "checkpoint_lsn": format_lsn(backup_label.checkpoint_lsn),
        "label": label,
        "backup_from": backup_label.backup_from,
        "system_identifier": source.system_identifier,
        "server_version": source.server_version,
        "data_checksums": source.data_checksums,
        "wal_segment_size": segment_size,
        "files": pg_manifest.file_count,
        "verified_by": verification.verified_by,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def take_base_backup(
    conn: ConnectionInfo,
    store: Store,
    cluster: str,
    *,
    encryption_key: EncryptionKey,
    staging_dir: Path,
    zstd_level: int,
    zstd_threads: int = 0,
    staging_space_ratio: float = 2.2,
    verify_readback: bool = True,
    max_rate_kib_s: int | None = None,
    producer: Mapping[str, Any] | None = None,
    now: Callable[[], datetime] = _utc_now,
) -> dict[str, Any]:
    """Take, verify, store and publish one base backup set of the cluster ``conn`` reaches.

    ``conn`` logs in as the replication role (hms_replica). Returns plain data (fits XCom): the
    set id, the manifest key, the ``base_backup`` manifest fields, the payloads, sizes and the
    seconds of every step. On failure nothing of this run is left in the store or in staging.
    """
    started_at = now()
    started = time.monotonic()
    seconds: dict[str, float] = {}
    backup_set_id = new_backup_set_id(started_at)
    label = label_for(backup_set_id)
    set_folder = key_for(cluster, BackupKind.BASE, backup_set_id)
    stored_keys: list[str] = []

    source, pg = check_source_and_staging(conn, staging_dir, space_ratio=staging_space_ratio)
    check_writable(store, preflight_prefix(cluster))
    if store.list(set_folder):
        raise PreflightFailed(
            f"{store.describe(set_folder)} already holds objects: another run uses backup set id {backup_set_id}"
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"base-{backup_set_id}-", dir=staging_dir))  # 0700
    try:
        with gpg_home(staging_dir) as home:
            check_encryption_key(home, encryption_key)  # before the copy: a bad key fails in seconds
            seconds["preflight"] = time.monotonic() - started

            tar_dir = workdir / "tars"
            backup_started_at = now()
            seconds["pg_basebackup"] = run_pg_basebackup(
                conn, pg, tar_dir, label=label, expected_bytes=source.cluster_size_bytes, max_rate_kib_s=max_rate_kib_s
            )
            backup_stopped_at = now()
            files = staged_files(tar_dir)
            for staged in files:
                staged.path.chmod(0o600)

            verification = verify_tar_backup(pg, tar_dir, workdir)
            seconds["verify"] = verification.extract_seconds + verification.verify_seconds
            base_backup = describe_backup(tar_dir, source, verification, label=label)
            # The server's backup interval lies inside this worker's [start, stop] clock readings:
            # recovery targets after stop_time can always be reached from this set.
            base_backup.update(start_time=_iso(backup_started_at), stop_time=_iso(backup_stopped_at))
            log.info(
                "base backup %s: WAL %s to %s on timeline %d (files %s to %s)",
                backup_set_id,
                base_backup["start_lsn"],
                base_backup["stop_lsn"],
                base_backup["timeline"],
                base_backup["start_wal_file"],
                base_backup["stop_wal_file"],
            )

            step = time.monotonic()
            compressor, encryption = zstd_stage(zstd_level, zstd_threads), encrypt_stage(home, encryption_key)
            payloads = []
            for staged in files:
                key = key_for(cluster, BackupKind.BASE, backup_set_id, staged.payload_name)
                stored_keys.append(key)
                payloads.append(store_staged_file(store, key, staged, compressor=compressor, encryption=encryption))
                staged.path.unlink()  # frees staging as the upload goes
            seconds["upload"] = time.monotonic() - step

        step = time.monotonic()
        for key, payload in zip(stored_keys, payloads, strict=False):
            _read_back(store, key, payload, verify_readback)
        seconds["readback"] = time.monotonic() - step

        finished_at = now()
        extra = manifest_extra(
            base_backup,
            pg,
            zstd_level=zstd_level,
            encryption_key=encryption_key,
            verification=verification,
            verify_readback=verify_readback,
            producer=producer,
        )
        manifest_key = publish_set(
            store,
            kind=BackupKind.BASE,
            cluster=cluster,
            backup_set_id=backup_set_id,
            started_at=started_at,
            finished_at=finished_at,
            payloads=payloads,
            extra=extra,
        )
    except BaseException:
        remove_unpublished(store, stored_keys)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds["total"] = time.monotonic() - started
    plain = sum(p.plain_size_bytes or 0 for p in payloads)
    stored_total = sum(p.size_bytes for p in payloads)
    log.info(
        "base backup set %s complete: %s (%s plain, %s stored) in %.0f s",
        backup_set_id,
        store.describe(manifest_key),
        human_bytes(plain),
        human_bytes(stored_total),
        seconds["total"],
    )
    return {
        "backup_set_id": backup_set_id,
        "cluster": cluster,
        "manifest_key": manifest_key,
        "manifest": store.describe(manifest_key),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "base_backup": base_backup,
        "payloads": [p.to_dict() for p in payloads],
        "sizes": {
            "cluster_bytes": source.cluster_size_bytes,
            "plain_bytes": plain,
            "stored_bytes": stored_total,
            "compression_ratio": round(plain / max(stored_total, 1), 2),
        },
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
    }


def manifest_extra(
    base_backup: Mapping[str, Any],
    pg: PgInstall,
    *,
    zstd_level: int,
    encryption_key: EncryptionKey,
    verification: Verification,
    verify_readback: bool,
    producer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The kind-specific fields of a base backup set's manifest (see the physical contract)."""
    return {
        "base_backup": dict(base_backup),
        "compression": {"method": "zstd", "level": zstd_level},
        "encryption": {"mode": encryption_key.mode.value, "key_id": encryption_key.key_id, "cipher": CIPHER},
        "tools": {
            "pg_basebackup": pg.version,
            "pg_verifybackup": pg.version,
            "zstd": zstd_version(),
            "gpg": gpg_version(),
        },
        "verification": {
            "pg_verifybackup": verification.described,
            "readback": "sha256" if verify_readback else "size",
        },
        **({"producer": dict(producer)} if producer else {}),
    }


def _read_back(store: Store, key: str, payload: Payload, verify: bool) -> None:
    """Re-read a stored payload against its sha256 (with read-back off, publish_set checks its size)."""
    if verify:
        verify_stored_payload(store, key, payload)
    else:
        log.warning("store.verify_readback is off: %s is checked by size only", store.describe(key))
