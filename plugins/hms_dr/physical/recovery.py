"""Point-in-time recovery: a new PostgreSQL cluster from a stored base backup set and the archived
WAL, replayed to a target (time, LSN, restore point, transaction id, ``immediate`` or ``latest``)
and promoted.

``recover`` decides first and touches nothing until every refusal has had its chance: a data
directory that is not empty, a target before the oldest base backup or after the newest archived
WAL, a gap in the stored WAL the target needs, an incremental base backup whose chain is broken.
Then it builds the data directory (``datadir``; an incremental from its whole chain),
serves WAL to ``restore_command`` (``walsource`` + ``walfetch``), starts the server and waits
until it has promoted, and returns what happened as plain data. A failed recovery stops the
server and raises RecoveryFailed with the server's FATAL line; it never leaves a promoted
cluster that silently lacks WAL.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import find_set, list_catalog
from hms_dr.crypto import DecryptionKey
from hms_dr.errors import (
    HmsDrError,
    NoBackupForTarget,
    PreflightFailed,
    RequestRefused,
    SetNotFound,
    TargetBeforeOldestBackup,
    WalMissing,
)
from hms_dr.manifest import BackupKind, parse_utc
from hms_dr.physical.datadir import recovery_settings, refuse_non_empty, restore_chain, write_recovery_config
from hms_dr.physical.recoveryplan import ArchivedWal, RecoveryPlan, base_backup_of, plan_recovery, refuse_wal_gap
from hms_dr.physical.request import refuse_pause_without_target
from hms_dr.physical.server import RecoveringServer, walfetch_restore_command
from hms_dr.physical.targets import RecoveryTarget, target_settings
from hms_dr.physical.walpath import (
    TimelineSpan,
    WalPath,
    newest_on_path,
    newest_timeline,
    parse_history,
    plan_wal_path,
)
from hms_dr.physical.walsource import WalSource
from hms_dr.server_user import (
    port_is_open,
    prepare_server_dir,
    server_user,
)
from hms_dr.wal.names import DEFAULT_WAL_SEGMENT_SIZE, history_name, segment_start_lsn
from hms_dr.wal.ship import stored_wal_names

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

__all__ = ["check_recovery", "plan_recovery", "recover"]

MAX_SOCKET_DIR_CHARS = 90


def recover(
    store: Store,
    cluster: str,
    target: RecoveryTarget,
    *,
    data_dir: Path,
    port: int,
    decryption_key: DecryptionKey,
    staging_dir: Path,
    backup_set_id: str | None = None,
    socket_dir: Path | None = None,
    log_file: Path | None = None,
    superuser: str = "postgres",
    timeout_s: float = 6 * 3600,
    promote: bool = True,
) -> dict[str, Any]:
    """Recover ``cluster`` to ``target`` into the new, empty ``data_dir`` and start it, promoted,
    on 127.0.0.1:``port``.

    :param backup_set_id: start from this base backup set instead of the one the plan picks.
    :param socket_dir: the server's private Unix socket directory (default: ``sockets/`` beside
        ``data_dir``); ``log_file`` its log (default: ``log/<data dir name>.log`` beside it).
    :param superuser: a superuser role of the backed-up cluster, used over the private socket.
    :param promote: False leaves the server paused at the target (read-only, still recovering:
        ``recovery_target_action = pause``) for inspection; ``SELECT pg_promote()`` opens it.
        PostgreSQL promotes at the end of the archive whatever the action, so ``latest`` refuses it.
    :returns: the base set used, the WAL path, timeline, recovery end LSN and time, seconds per step.
    """
    started = time.monotonic()
    steps: dict[str, float] = {}
    data_dir = data_dir.absolute()
    socket_dir = (socket_dir or data_dir.parent / "sockets").absolute()
    log_file = (log_file or data_dir.parent / "log" / f"{data_dir.name}.log").absolute()
    refuse_pause_without_target(target, promote)
    refuse_non_empty(data_dir)
    if port_is_open(port):
        raise PreflightFailed(
            f"port {port} on 127.0.0.1 is already in use: choose another port for the recovered server"
        )
    if len(str(socket_dir)) > MAX_SOCKET_DIR_CHARS:
        raise PreflightFailed(
            f"socket directory {socket_dir} is longer than {MAX_SOCKET_DIR_CHARS} characters",
            hint="pass a shorter socket_dir",
        )
    log.info("point-in-time recovery of %s to %s into %s", cluster, target.describe(), data_dir)

    with WalSource(store, cluster, decryption_key, staging_dir=staging_dir, server_uid=_server_uid()) as source:
        step = time.monotonic()
        plan, path = choose_recovery(
            store, cluster, target, source, staging_dir=staging_dir, backup_set_id=backup_set_id
        )
        base = plan.base
        steps["plan"] = time.monotonic() - step

        step = time.monotonic()
        for directory in (data_dir, socket_dir, log_file.parent):
            prepare_server_dir(directory, 0o700)
        try:
            restored = restore_chain(store, cluster, plan.chain, decryption_key, data_dir, staging_dir=staging_dir)
            source.serve()
            restore_command = walfetch_restore_command(source.directory)
            stop_at = {**target_settings(target), **({} if promote else {"recovery_target_action": "pause"})}
            settings = recovery_settings(
                port=port, socket_dir=socket_dir, restore_command=restore_command, target_settings=stop_at
            )
            write_recovery_config(data_dir, settings)
        except BaseException:
            # No server ever ran here: what was extracted is ours (the directory was empty), and
            # leaving it would only make the next attempt refuse a non-empty data directory.
            empty_directory(data_dir)
            raise
        steps["restore_base_backup"] = time.monotonic() - step

        step = time.monotonic()
        server = RecoveringServer(data_dir, port, socket_dir, log_file, superuser)
        server.start()
        try:
            outcome = server.wait_until_promoted(source, timeout_s=timeout_s, pause_at_target=not promote)
        except BaseException:
            server.stop("immediate")
            raise
        steps["replay_and_promote"] = time.monotonic() - step
        wal = source.stats.to_dict()

    steps["total"] = time.monotonic() - started
    result = {
        "cluster": cluster,
        "target": target.to_dict(),
        "backup_set_id": base.backup_set_id,
        "base_backup": base.to_dict(),
        "chain": list(plan.chain_ids),
        "plan_reason": plan.reason,
        "plan_warnings": list(plan.warnings),
        "wal_path": {
            "timelines": path.describe_spans(),
            "first_needed": path.expected[0] if path.expected else None,
            "newest_in_store": path.newest,
            "first_missing": path.first_missing,
        },
        "wal": wal,
        "restored": restored,
        **outcome,
        "promoted": promote,
        "data_dir": str(data_dir),
        "port": port,
        "socket_dir": str(socket_dir),
        "log_file": str(log_file),
        "seconds": {name: round(value, 3) for name, value in steps.items()},
    }
    log.info(
        "recovered %s to %s from base backup set %s: timeline %s, recovery %s at %s (%s), last transaction %s, %.0f s",
        cluster,
        target.describe(),
        base.backup_set_id,
        outcome["timeline"],
        "ended" if promote else "paused",
        outcome["recovery_end_lsn"],
        outcome["recovery_end_reason"],
        outcome["recovery_end_time"] or "none replayed",
        steps["total"],
    )
    return result


def check_recovery(
    store: Store,
    cluster: str,
    target: RecoveryTarget,
    *,
    decryption_key: DecryptionKey,
    staging_dir: Path,
    backup_set_id: str | None = None,
) -> dict[str, Any]:
    """The plan ``recover`` would follow, decided the same way and touching no data directory:
    refuses (one line) a target before the oldest base backup or after the newest archived WAL,
    an unknown ``backup_set_id`` and a gap in the WAL the target needs.

    The validation steps of the DR DAGs call this with what the operator asked for: a base backup
    id the store lacks and a target older than every base backup are the request's to fix
    (RequestRefused, no page); missing WAL, or WAL not yet archived up to the target, is the
    system's (it pages). So is a broken chain of incremental base backups (BackupChainBroken: a
    link missing from the store, of another cluster, or contradicting its child), even for a
    set the operator named: the store lost or mixed up what the set needs. A broken newest chain
    that an older whole one replaces is reported in ``plan_warnings``. A corrupt link (bytes
    that differ from their sha256) is found by ``recover``, before anything is written: this
    check reads manifests only."""
    with WalSource(store, cluster, decryption_key, staging_dir=staging_dir, server_uid=_server_uid()) as source:
        try:
            plan, path = choose_recovery(
                store, cluster, target, source, staging_dir=staging_dir, backup_set_id=backup_set_id
            )
        except TargetBeforeOldestBackup as exc:
            raise RequestRefused(exc.message, hint=exc.hint) from None
        except SetNotFound as exc:
            if exc.kind != BackupKind.BASE.value or exc.backup_set_id != backup_set_id:
                raise  # a WAL set that vanished while the plan was read: the store's, not the request's
            raise RequestRefused(exc.message, hint=exc.hint) from None
    return {
        "backup_set_id": plan.base.backup_set_id,
        "base_backup": plan.base.to_dict(),
        "chain": list(plan.chain_ids),
        "plan_reason": plan.reason,
        "plan_warnings": list(plan.warnings),
        # what the base backup extracts to (its tars, plain): the least the data directory needs;
        # for a chain every link is extracted beside it (then hard-linked into it), so all of them
        "base_plain_bytes": sum(
            p.plain_size_bytes or p.size_bytes for link in plan.chain for p in link.backup_set.manifest.payloads
        ),
        "wal_files": len(path.expected),
        "wal_path": {
            "timelines": path.describe_spans(),
            "newest_in_store": path.newest,
            "first_missing": path.first_missing,
        },
    }


def choose_recovery(
    store: Store,
    cluster: str,
    target: RecoveryTarget,
    source: WalSource,
    *,
    staging_dir: Path,
    backup_set_id: str | None,
) -> tuple[RecoveryPlan, WalPath]:
    """Read the catalog and the WAL listing, then decide (pure functions) which base backup and
    which WAL files; refuses the target with one line when the store cannot serve it."""
    base_sets = list_catalog(store, cluster, BackupKind.BASE).sets
    stored = stored_wal_names(store, cluster)
    segment_size = _segment_size(base_sets)
    spans = _timeline_path(source, stored, staging_dir)
    newest = newest_on_path(stored, spans, segment_size)
    archived = None
    if newest is not None:
        archived = ArchivedWal(
            newest, _archived_at(store, cluster, newest), segment_start_lsn(newest, segment_size) + segment_size
        )
    plan = plan_recovery(base_sets, archived, target, backup_set_id=backup_set_id)
    for line in plan.skipped:
        log.warning("not considered: %s", line)
    base = plan.base
    if base.timeline not in {span.timeline for span in spans}:
        raise NoBackupForTarget(
            f"base backup set {base.backup_set_id} is on timeline {base.timeline}, which is not on the path to the newest "
            f"timeline in the store ({' -> '.join(str(s.timeline) for s in spans)})",
            hint="name a base backup set taken on that path (backup_set_id)",
        )
    path = plan_wal_path(
        stored,
        spans,
        first_segment=base.start_wal_file,
        carried=base.carried_segments(),
        segment_size_bytes=segment_size,
    )
    before_gap = path.before(path.first_missing) if path.first_missing else None
    archived_before_gap = _archived_at(store, cluster, before_gap) if before_gap and before_gap in stored else None
    refuse_wal_gap(path, target, archived_at_before_gap=archived_before_gap)
    carried_not_stored = set(base.carried_segments()) - stored
    gap_hint = (
        f" (the stored WAL has a gap: {path.first_missing} is the first file missing)" if path.first_missing else ""
    )
    source.expect([name for name in path.expected if name not in carried_not_stored], gap_hint=gap_hint)
    log.info(
        "plan: base backup set %s (%s); WAL %s to %s over timeline(s) %s, %d file(s)%s",
        base.backup_set_id if not plan.is_incremental else f"{base.backup_set_id} (chain {', '.join(plan.chain_ids)})",
        plan.reason,
        path.expected[0] if path.expected else base.start_wal_file,
        path.newest or "-",
        path.describe_spans(),
        len(path.expected),
        f", first missing {path.first_missing}" if path.first_missing else "",
    )
    return plan, path


def empty_directory(directory: Path) -> None:
    """Remove everything inside ``directory`` (which this recovery found empty), keep the directory."""
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    log.info("removed the partly built data directory contents of %s", directory)


def _segment_size(base_sets: Sequence[Any]) -> int:
    for backup_set in reversed(base_sets):
        try:
            return base_backup_of(backup_set).wal_segment_size
        except HmsDrError:
            continue
    return DEFAULT_WAL_SEGMENT_SIZE


def _timeline_path(source: WalSource, stored: set[str], staging_dir: Path) -> tuple[TimelineSpan, ...]:
    """The timelines from 1 to the newest the store knows, from that timeline's history file."""
    newest = newest_timeline(stored)
    if newest == 1:
        return (TimelineSpan(1, None, None),)
    name = history_name(newest)
    scratch = staging_dir / f".{name}.{os.getpid()}"
    try:
        fetched = source.fetch(name, scratch)
        if fetched is None:
            raise WalMissing(
                f"the store holds WAL of timeline {newest} but not its history file {name}: recovery cannot follow that timeline",
                hint="ship the history file from the promoted server's pg_wal (or its spool)",
            )
        text = scratch.read_text(encoding="utf-8")
    finally:
        scratch.unlink(missing_ok=True)
    return parse_history(text, newest)


def _archived_at(store: Store, cluster: str, name: str) -> datetime:
    body = find_set(store, cluster, BackupKind.WAL, name).manifest.body
    return parse_utc(str(body.get("archived_at") or body["finished_at"]))


def _server_uid() -> int | None:
    user = server_user()
    return None if user is None else pwd.getpwnam(user).pw_uid
