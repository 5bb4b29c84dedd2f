"""The weekly base backup: pg_basebackup, proven against its backup_manifest, compressed, encrypted, stored.

``take_base_backup`` runs every step in one call, because they share a staging directory that
must not outlive the run:

1. preflight: tools, the role's REPLICATION, WAL senders, staging space, the key;
2. the copy, one of two methods (``base_backup.method``):
   - streamed (the default, ``physical.streamcopy``): ``pg_basebackup -D - -X fetch`` flows through
     the streamed check (every file's size and SHA-256 against backup_manifest, the WAL parsed)
     and ``zstd | gpg`` into the store; staging holds only the backup's WAL and manifest;
   - staged (``physical.stagedcopy``): tars on disk, ``pg_verifybackup``, then each file uploaded;
     ~2.2 x the cluster in staging; also what a cluster with its own tablespaces takes;
3. every payload is read back against its sha256, and only then is ``manifest.json`` written
   (``publish_set``).

With ``base_backup.incremental`` on (PostgreSQL 17+), step 2 may instead be an incremental backup
against the newest set (``physical.incremental`` decides, ``physical.parentmanifest`` brings back
the parent's backup_manifest, proven); its manifest then records the chain (``physical.chain``).

Compression happens here, on the worker, rather than with pg_basebackup's server-side
``--compress``: the check needs the plain stream anyway, and the database host keeps its CPU. A failure at any step removes what this run stored and the staging directory:
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

from hms_dr.catalog import key_for, kind_prefix, list_catalog, preflight_prefix
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home, gpg_version
from hms_dr.errors import PreflightFailed, ToolFailed
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.pginstalls import INCREMENTAL_BACKUP_MAJOR, PgInstall
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.backup_manifest import check_label_matches_manifest, parse_backup_label, parse_backup_manifest
from hms_dr.physical.chain import BackupType, chain_fields_for_child, full_backup_fields
from hms_dr.physical.incremental import (
    BackupPlan,
    BackupTypeRequest,
    check_incremental_source,
    plan_base_backup,
    wants_incremental,
)
from hms_dr.physical.parentmanifest import ParentManifestUnavailable, fetch_parent_manifest, keep_backup_manifest
from hms_dr.physical.pgbasebackup import needs_full_backup
from hms_dr.physical.preflight import (
    SourceCluster,
    check_source_and_staging,
    copy_method_for,
    staging_space_needed,
    streamed_space_needed,
)
from hms_dr.physical.stagedcopy import stage_base_backup
from hms_dr.physical.staging import CopiedBackup, CopyJob, zstd_stage
from hms_dr.physical.streamcopy import stream_base_backup
from hms_dr.physical.verifybackup import BACKUP_MANIFEST, IN_THE_STREAM, Verification
from hms_dr.policy.base_backup import DEFAULT_STAGING_LIMIT_MB, BaseBackupMethod
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


def describe_backup(
    raw_manifest: bytes,
    backup_label_text: str,
    source: SourceCluster,
    verification: Verification,
    *,
    label: str,
    where: str,
) -> dict[str, Any]:
    """The manifest's ``base_backup`` fields from PostgreSQL's backup_manifest and backup_label."""
    pg_manifest = parse_backup_manifest(raw_manifest, where=f"{BACKUP_MANIFEST} of {where}")
    backup_label = parse_backup_label(backup_label_text, where=f"backup_label of {where}")
    check_label_matches_manifest(backup_label, pg_manifest, where=where)
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
    method: BaseBackupMethod = BaseBackupMethod.STREAMED,
    staging_limit_bytes: int = DEFAULT_STAGING_LIMIT_MB << 20,
    staging_space_ratio: float = 2.2,
    verify_readback: bool = True,
    max_rate_kib_s: int | None = None,
    producer: Mapping[str, Any] | None = None,
    now: Callable[[], datetime] = _utc_now,
    backup_type: BackupTypeRequest = BackupTypeRequest.AUTO,
    incremental_enabled: bool = False,
    full_every_days: int = 7,
) -> dict[str, Any]:
    """Take, verify, store and publish one base backup set of the cluster ``conn`` reaches.

    ``conn`` logs in as the replication role (hms_replica). Returns plain data (fits XCom): the
    set id, the manifest key, the ``base_backup`` manifest fields (the chain fields included),
    the payloads, sizes and the seconds of every step. On failure nothing of this run is left in
    the store or in staging. ``backup_type`` is the run's request (auto follows
    ``incremental_enabled`` and ``full_every_days``, see ``physical.incremental``).
    """
    started_at = now()
    started = time.monotonic()
    seconds: dict[str, float] = {}
    backup_set_id = new_backup_set_id(started_at)
    label = label_for(backup_set_id)
    set_folder = key_for(cluster, BackupKind.BASE, backup_set_id)
    stored_keys: list[str] = []

    def space_needed(source: SourceCluster) -> int:
        if copy_method_for(method, source) is BaseBackupMethod.STREAMED:
            return streamed_space_needed(staging_limit_bytes, source)
        return staging_space_needed(source.cluster_size_bytes, staging_space_ratio, source.wal_segment_size_bytes)

    source, pg = check_source_and_staging(conn, staging_dir, space_needed=space_needed)
    where = f"{conn.host}:{conn.port}"
    copy_method = copy_method_for(method, source)
    if copy_method is not method:
        log.warning(
            "staged base backup instead of streamed: %s has %d tablespace(s) besides pg_default and pg_global, "
            "and pg_basebackup writes only one tablespace to a pipe",
            where,
            source.extra_tablespaces,
        )
    if wants_incremental(backup_type, incremental_enabled=incremental_enabled):
        asked_by = (
            "backup_type incremental"
            if backup_type is BackupTypeRequest.INCREMENTAL
            else "the policy (base_backup.incremental: true)"
        )
        check_incremental_source(source, where=where, asked_by=asked_by)
    check_writable(store, preflight_prefix(cluster))
    if store.list(set_folder):
        raise PreflightFailed(
            f"{store.describe(set_folder)} already holds objects: another run uses backup set id {backup_set_id}"
        )
    plan = _plan(store, cluster, source, backup_type, incremental_enabled, full_every_days, started_at)
    workdir = Path(tempfile.mkdtemp(prefix=f"base-{backup_set_id}-", dir=staging_dir))  # 0700
    try:
        with gpg_home(staging_dir) as home:
            check_encryption_key(home, encryption_key)  # before the copy: a bad key fails in seconds
            parent_manifest: Path | None = None
            if plan.is_incremental:
                assert plan.parent is not None
                try:
                    parent_manifest = fetch_parent_manifest(
                        store,
                        cluster,
                        plan.parent,
                        encryption_key=encryption_key,
                        staging_dir=staging_dir,
                        workdir=workdir,
                        gpg_home_dir=home,
                    )
                except ParentManifestUnavailable as exc:
                    if backup_type is BackupTypeRequest.INCREMENTAL:
                        raise
                    plan = _fall_back_to_full(plan, exc.message)
            seconds["preflight"] = time.monotonic() - started

            compressor, encryption = zstd_stage(zstd_level, zstd_threads), encrypt_stage(home, encryption_key)
            attempts = iter(range(1, 3))

            def copy_cluster(incremental_manifest: Path | None) -> CopiedBackup:
                copy_dir = workdir / f"copy-{next(attempts)}"
                copy_dir.mkdir(mode=0o700)
                job = CopyJob(
                    conn=conn,
                    pg=pg,
                    store=store,
                    cluster=cluster,
                    backup_set_id=backup_set_id,
                    workdir=copy_dir,
                    label=label,
                    expected_bytes=source.cluster_size_bytes,
                    compressor=compressor,
                    encryption=encryption,
                    stored_keys=stored_keys,
                    max_rate_kib_s=max_rate_kib_s,
                    incremental_manifest=incremental_manifest,
                )
                if copy_method is BaseBackupMethod.STREAMED:
                    copied = stream_base_backup(job, staging_limit_bytes=staging_limit_bytes)
                else:
                    copied = stage_base_backup(job)
                shutil.rmtree(copy_dir, ignore_errors=True)
                return copied

            backup_started_at = now()
            try:
                copied = copy_cluster(parent_manifest)
            except ToolFailed as exc:
                if not (plan.is_incremental and backup_type is BackupTypeRequest.AUTO and needs_full_backup(exc)):
                    raise
                # The server cannot take this incremental (e.g. WAL summaries missing since the
                # parent's start): a full backup now, rather than no backup tonight.
                plan = _fall_back_to_full(plan, f"the server refused the incremental: {exc.last_stderr_line}")
                remove_unpublished(store, stored_keys)
                stored_keys.clear()
                backup_started_at = now()
                copied = copy_cluster(None)
            backup_stopped_at = now()
            seconds.update(copied.seconds)
            payloads = copied.payloads
            assert copied.verification is not None
            verification = copied.verification
            base_backup = describe_backup(
                copied.raw_manifest, copied.backup_label, source, verification, label=label, where=where
            )
            base_backup["method"] = copy_method.value
            base_backup.update(chain_fields_for_child(plan.parent) if plan.parent is not None else full_backup_fields())
            # Kept after publishing, for the next incremental of this worker (parentmanifest).
            kept_manifest = workdir / "published.backup_manifest"
            kept_manifest.write_bytes(copied.raw_manifest)
            kept_manifest.chmod(0o600)
            # The server's backup interval lies inside this worker's [start, stop] clock readings:
            # recovery targets after stop_time can always be reached from this set.
            base_backup.update(start_time=_iso(backup_started_at), stop_time=_iso(backup_stopped_at))
            log.info(
                "%s base backup %s: WAL %s to %s on timeline %d (files %s to %s); staged at most %s on this worker",
                base_backup["backup_type"],
                backup_set_id,
                base_backup["start_lsn"],
                base_backup["stop_lsn"],
                base_backup["timeline"],
                base_backup["start_wal_file"],
                base_backup["stop_wal_file"],
                human_bytes(copied.staged_peak_bytes),
            )

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
        try:
            # Only a server that can take incrementals (17+) needs its parent's file; a 15
            # deployment's staging stays empty between runs.
            if source.server_major >= INCREMENTAL_BACKUP_MAJOR:
                keep_backup_manifest(staging_dir, backup_set_id, kept_manifest)
        except OSError as exc:  # the set is published and whole: the next run decrypts or takes a full
            log.warning("could not keep the backup_manifest of set %s on this worker: %s", backup_set_id, exc)
    except BaseException:
        remove_unpublished(store, stored_keys)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds["total"] = time.monotonic() - started
    plain = sum(p.plain_size_bytes or 0 for p in payloads)
    stored_total = sum(p.size_bytes for p in payloads)
    log.info(
        "%s base backup set %s complete: %s (%s plain, %s stored) in %.0f s",
        base_backup["backup_type"],
        backup_set_id,
        store.describe(manifest_key),
        human_bytes(plain),
        human_bytes(stored_total),
        seconds["total"],
    )
    sizes: dict[str, Any] = {
        "cluster_bytes": source.cluster_size_bytes,
        "staged_peak_bytes": copied.staged_peak_bytes,
        "plain_bytes": plain,
        "stored_bytes": stored_total,
        "compression_ratio": round(plain / max(stored_total, 1), 2),
    }
    if plan.chain is not None:
        full = plan.chain.full
        sizes["full_stored_bytes"] = full.size_bytes
        sizes["share_of_full"] = round(stored_total / max(full.size_bytes, 1), 4)
        log.info(
            "incremental set %s stores %s, %.1f%% of its chain's full set %s (%s); chain: %s",
            backup_set_id,
            human_bytes(stored_total),
            100 * stored_total / max(full.size_bytes, 1),
            full.backup_set_id,
            human_bytes(full.size_bytes),
            " -> ".join([*plan.chain.ids, backup_set_id]),
        )
    return {
        "backup_set_id": backup_set_id,
        "cluster": cluster,
        "manifest_key": manifest_key,
        "manifest": store.describe(manifest_key),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "base_backup": base_backup,
        "backup_type": base_backup["backup_type"],
        "parent_backup_set_id": plan.parent_backup_set_id,
        "chain": base_backup.get("chain", []),
        "plan_reasons": list(plan.reasons),
        "payloads": [p.to_dict() for p in payloads],
        "sizes": sizes,
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
    }


def _plan(
    store: Store,
    cluster: str,
    source: SourceCluster,
    request: BackupTypeRequest,
    incremental_enabled: bool,
    full_every_days: int,
    started_at: datetime,
) -> BackupPlan:
    """This run's type (physical.incremental), each reason logged on its own line. The catalog is
    read only when an incremental is possible at all."""
    sets: tuple[Any, ...] = ()
    unreadable: list[str] = []
    if wants_incremental(request, incremental_enabled=incremental_enabled):
        listing = list_catalog(store, cluster, BackupKind.BASE)
        prefix = kind_prefix(cluster, BackupKind.BASE)
        sets = listing.sets
        unreadable = [key.removeprefix(prefix).partition("/")[0] for key in listing.unreadable]
    plan = plan_base_backup(
        request,
        incremental_enabled=incremental_enabled,
        full_every_days=full_every_days,
        sets=sets,
        unreadable_ids=unreadable,
        source=source,
        now=started_at,
    )
    for reason in plan.reasons:
        log.info("%s base backup: %s", plan.backup_type.value, reason)
    return plan


def _fall_back_to_full(plan: BackupPlan, why: str) -> BackupPlan:
    log.warning("full base backup instead of an incremental: %s", why)
    return BackupPlan(BackupType.FULL, (*plan.reasons, f"full instead: {why}"))


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
            # the streamed check is hms-dr's own; the staged method's is pg_verifybackup's
            **({} if verification.method == IN_THE_STREAM else {"pg_verifybackup": pg.version}),
            "pg_waldump": pg.version,
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
