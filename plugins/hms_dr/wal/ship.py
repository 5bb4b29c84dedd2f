"""Shipping spooled WAL files to the store: one set per file, manifest last, spool cleared after.

Per file: ``zstd | gpg`` from the spool file into ``<cluster>/wal/<name>/<name>.zst.gpg`` while
the plain bytes are hashed, the stored bytes read back against their sha256, the manifest
written and read back, and only then (if the policy says so) the spool file removed. A name
already stored with the same plain sha256 is skipped; with another sha256 it is an alarm
(ChecksumMismatch), never an overwrite.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import find_set, key_for
from hms_dr.crypto import EncryptionKey, check_encryption_key, encrypt_stage, gpg_home
from hms_dr.digests import sha256_of_file
from hms_dr.errors import ChecksumMismatch, HmsDrError
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Payload
from hms_dr.publish import publish_set, verify_stored_payload
from hms_dr.records import Record
from hms_dr.streams import Pipeline, Stage
from hms_dr.units import human_bytes, human_rate
from hms_dr.wal.listing import stored_wal_names
from hms_dr.wal.spool import SpoolFile, plan_shipping, read_spool

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

PAYLOAD_SUFFIX = ".zst.gpg"
PAYLOAD_FORMAT = "wal"


@dataclass(frozen=True)
class ShipReport(Record):
    """One shipping pass (ship_spool's XCom is its to_xcom())."""

    shipped: list[str]
    already_stored: list[str]
    removed_from_spool: list[str]
    ignored: list[str]
    plain_bytes: int
    stored_bytes: int
    seconds: float


@dataclass(frozen=True)
class ShipOutcome:
    """What happened to one spool file."""

    name: str
    action: str  # "shipped" | "already stored"
    plain_size_bytes: int
    stored_size_bytes: int
    seconds: float
    removed_from_spool: bool


def payload_name(wal_name: str) -> str:
    return wal_name + PAYLOAD_SUFFIX


def ship_wal_file(
    store: Store,
    cluster: str,
    spool_file: SpoolFile,
    *,
    encryption: Stage,
    encryption_info: dict[str, Any],
    zstd_level: int,
    remove_from_spool: bool,
) -> ShipOutcome:
    """Store, verify and publish one spool file as its own set; remove it from the spool after."""
    name = spool_file.name
    started = time.monotonic()
    started_at = datetime.now(UTC)
    key = key_for(cluster, BackupKind.WAL, name, payload_name(name))
    if store.exists(key):
        # No manifest (the plan saw none): an interrupted earlier attempt. Not a set, so not a
        # conflict: remove the partial payload and ship again.
        if store.exists(key_for(cluster, BackupKind.WAL, name, MANIFEST_NAME)):
            return check_already_stored(store, cluster, spool_file, remove_from_spool=remove_from_spool)
        log.warning("removing %s left without a manifest by an interrupted run", store.describe(key))
        store.delete(key)
    plain = hashlib.sha256()
    plain_size = 0

    def tap(chunk: bytes) -> None:
        nonlocal plain_size
        plain.update(chunk)
        plain_size += len(chunk)

    stages = [Stage("zstd", ["zstd", "-q", "-c", f"-{zstd_level}"]), encryption]
    with spool_file.path.open("rb") as source, Pipeline(stages, source=source, tap=tap, tap_after=0) as pipeline:
        stored = store.put(key, pipeline.output)  # type: ignore[arg-type]
    payload = Payload(
        name=payload_name(name),
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        format=PAYLOAD_FORMAT,
        plain_size_bytes=plain_size,
        plain_sha256=plain.hexdigest(),
    )
    verify_stored_payload(store, key, payload)
    publish_set(
        store,
        kind=BackupKind.WAL,
        cluster=cluster,
        backup_set_id=name,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        payloads=[payload],
        extra={
            "wal_file": name,
            "wal_kind": spool_file.wal.kind.value,
            "timeline": spool_file.wal.timeline,
            "archived_at": spool_file.modified_at.isoformat().replace("+00:00", "Z"),
            "plain_size_bytes": plain_size,
            "compression": {"method": "zstd", "level": zstd_level},
            "encryption": encryption_info,
        },
    )
    removed = _confirm_then_remove(store, cluster, spool_file, plain.hexdigest(), remove_from_spool)
    return ShipOutcome(name, "shipped", plain_size, stored.size_bytes, time.monotonic() - started, removed)


def check_already_stored(store: Store, cluster: str, spool_file: SpoolFile, *, remove_from_spool: bool) -> ShipOutcome:
    """A spool file whose set exists: the same bytes are skipped, other bytes raise ChecksumMismatch."""
    started = time.monotonic()
    backup_set = find_set(store, cluster, BackupKind.WAL, spool_file.name)
    payload = backup_set.manifest.payloads[0]
    removed = _confirm_then_remove(store, cluster, spool_file, sha256_of_file(spool_file.path), remove_from_spool)
    return ShipOutcome(
        spool_file.name,
        "already stored",
        payload.plain_size_bytes or 0,
        payload.size_bytes,
        time.monotonic() - started,
        removed,
    )


def _confirm_then_remove(store: Store, cluster: str, spool_file: SpoolFile, plain_sha256: str, remove: bool) -> bool:
    """Read the set's manifest back; the spool file goes only once the manifest vouches for its bytes."""
    backup_set = find_set(store, cluster, BackupKind.WAL, spool_file.name)
    stored_sha256 = backup_set.manifest.payloads[0].plain_sha256
    if stored_sha256 != plain_sha256:
        raise ChecksumMismatch(
            f"WAL file {spool_file.name} in the spool (plain sha256 {plain_sha256[:16]}…) differs from the stored set "
            f"{store.describe(backup_set.manifest_key)} (plain sha256 {str(stored_sha256)[:16]}…): not overwritten",
            hint=f"two clusters may archive into one store, or {spool_file.path} was altered; investigate before removing either",
        )
    if not remove:
        return False
    spool_file.path.unlink()
    return True


def ship_spool(
    store: Store,
    cluster: str,
    spool_dir: Path,
    *,
    encryption_key: EncryptionKey,
    zstd_level: int,
    staging_dir: Path,
    remove_from_spool: bool,
) -> ShipReport:
    """Ship every spool file not yet stored (oldest first); finish the loop, then raise one error
    naming every conflicting file."""
    started = time.monotonic()
    listing = read_spool(spool_dir)
    for name in listing.ignored:
        log.warning("spool %s holds %s, which is not a WAL file: left alone", spool_dir, name)
    plan = plan_shipping(listing.files, stored_wal_names(store, cluster))
    log.info("spool %s: %d file(s) to ship, %d already stored", spool_dir, len(plan.to_ship), len(plan.already_stored))
    outcomes: list[ShipOutcome] = []
    conflicts: list[HmsDrError] = []
    encryption_info = {"mode": encryption_key.mode.value, "key_id": encryption_key.key_id}
    for spool_file in plan.already_stored:
        try:
            outcomes.append(check_already_stored(store, cluster, spool_file, remove_from_spool=remove_from_spool))
        except ChecksumMismatch as exc:
            log.error("%s", exc.message)
            conflicts.append(exc)
    if plan.to_ship:
        with gpg_home(staging_dir) as home:
            check_encryption_key(home, encryption_key)
            encryption = encrypt_stage(home, encryption_key)
            for spool_file in plan.to_ship:
                try:
                    outcome = ship_wal_file(
                        store,
                        cluster,
                        spool_file,
                        encryption=encryption,
                        encryption_info=encryption_info,
                        zstd_level=zstd_level,
                        remove_from_spool=remove_from_spool,
                    )
                except ChecksumMismatch as exc:
                    log.error("%s", exc.message)
                    conflicts.append(exc)
                    continue
                outcomes.append(outcome)
                log.info(
                    "shipped %s: %s plain, %s stored, %.2f s%s",
                    outcome.name,
                    human_bytes(outcome.plain_size_bytes),
                    human_bytes(outcome.stored_size_bytes),
                    outcome.seconds,
                    ", removed from the spool" if outcome.removed_from_spool else "",
                )
    return _summarize(outcomes, conflicts, listing.ignored, time.monotonic() - started)


def _summarize(
    outcomes: Sequence[ShipOutcome], conflicts: Sequence[HmsDrError], ignored: Sequence[str], seconds: float
) -> ShipReport:
    shipped = [o for o in outcomes if o.action == "shipped"]
    plain_bytes = sum(o.plain_size_bytes for o in shipped)
    stored_bytes = sum(o.stored_size_bytes for o in shipped)
    log.info(
        "shipped %d WAL file(s) (%s plain, %s stored) in %.1f s, %s; %d already stored",
        len(shipped),
        human_bytes(plain_bytes),
        human_bytes(stored_bytes),
        seconds,
        human_rate(plain_bytes, seconds),
        len(outcomes) - len(shipped),
    )
    if conflicts:
        raise ChecksumMismatch(
            f"{len(conflicts)} WAL file(s) conflict with the store: {conflicts[0].message}"
            + (f" (and {len(conflicts) - 1} more, see the log)" if len(conflicts) > 1 else ""),
            hint=conflicts[0].hint,
        )
    return ShipReport(
        shipped=[o.name for o in shipped],
        already_stored=[o.name for o in outcomes if o.action != "shipped"],
        removed_from_spool=[o.name for o in outcomes if o.removed_from_spool],
        ignored=list(ignored),
        plain_bytes=plain_bytes,
        stored_bytes=stored_bytes,
        seconds=round(seconds, 3),
    )
