"""A point-in-time recovery request: what an operator typed into hms_dr_pitr's trigger form,
validated before anything is created.

``read_pitr_request`` is pure (params, the policy's limits and ``now`` in; a request or a
one-line RequestRefused out). ``check_pitr_host`` then looks at the host that will run the new
cluster: the data directory must be new or empty and really below an allowed root (symlinks
resolved), the port free. Whether the store can reach the target (a base backup old enough, WAL
new enough, no gap) is the recovery engine's own plan, ``recovery.check_recovery``.

What the operator chose, and can choose differently, is refused with RequestRefused (the run
fails without paging); what the host or the policy lacks (no allowed root at all, no free port
in the range, too little space) is a PreflightFailed or ParamInvalid, and pages.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from hms_dr import patterns
from hms_dr.errors import ParamInvalid, PreflightFailed, RequestRefused
from hms_dr.patterns import matcher
from hms_dr.physical.datadir import refuse_non_empty
from hms_dr.physical.targets import RecoveryTarget, TargetKind, format_time, parse_recovery_target, refuse_future_target
from hms_dr.server_user import port_is_open
from hms_dr.units import human_bytes

BACKUP_SET_ID = matcher(patterns.BACKUP_SET_ID)
MIN_REASON_CHARS = 5
MAX_REASON_CHARS = 500
# The server's socket directory and log go beside the data directory: its name must be usable
# in a Unix socket path (recover refuses socket directories over 90 characters).
MAX_DATA_DIR_CHARS = 80


@dataclass(frozen=True)
class PitrRequest:
    """A validated request: the target, where the new cluster goes, from which base backup."""

    target: RecoveryTarget
    data_dir: Path
    port: int | None  # None: the first free port of the policy's range, chosen on the host
    backup_set_id: str | None  # None: the recovery plan picks
    promote: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "target_described": self.target.describe(),
            "data_dir": str(self.data_dir),
            "port": self.port,
            "backup_set_id": self.backup_set_id,
            "promote": self.promote,
            "reason": self.reason,
        }


def read_pitr_request(
    params: Mapping[str, Any], *, allowed_roots: Sequence[Path], port_range: tuple[int, int], now: datetime
) -> PitrRequest:
    """The request in ``params`` (the DAG's params), or RequestRefused naming the first bad one."""
    reason = str(params.get("reason") or "").strip()
    if len(reason) < MIN_REASON_CHARS:
        raise RequestRefused(
            "reason is required: say why this recovery is run (it goes to the audit trail), "
            f"at least {MIN_REASON_CHARS} characters"
        )
    if len(reason) > MAX_REASON_CHARS:
        raise RequestRefused(f"reason is {len(reason)} characters; at most {MAX_REASON_CHARS}")
    promote = params.get("promote", True)
    if not isinstance(promote, bool):
        raise RequestRefused(f"promote must be true or false, got {promote!r}")
    try:  # the target's checks are shared with recover(), where a bad target is no request's fault
        target = parse_recovery_target(str(params.get("target_type") or ""), _text_or_none(params.get("target")))
        refuse_future_target(target, now)
        refuse_pause_without_target(target, promote)
    except ParamInvalid as exc:
        raise RequestRefused(exc.message, hint=exc.hint) from None
    backup_set_id = _text_or_none(params.get("base_backup_id"))
    if backup_set_id is not None and backup_set_id.lower() in ("automatic", "auto"):
        backup_set_id = None
    if backup_set_id is not None and not BACKUP_SET_ID.fullmatch(backup_set_id):
        raise RequestRefused(
            f"base_backup_id must be empty (automatic) or a set id like 20261124T030000Z, got {backup_set_id!r}"
        )
    return PitrRequest(
        target=target,
        data_dir=_data_dir(params.get("data_directory"), allowed_roots),
        port=_port(params.get("port"), port_range),
        backup_set_id=backup_set_id,
        promote=promote,
        reason=reason,
    )


def refuse_pause_without_target(target: RecoveryTarget, promote: bool) -> None:
    """ParamInvalid for promote=false with ``latest``: with no target to pause at, PostgreSQL
    promotes at the end of the archive, so the server would not stay paused as asked."""
    if not promote and target.kind is TargetKind.LATEST:
        raise ParamInvalid(
            "promote=false needs a recovery target to pause at: 'latest' replays the whole archive and always promotes",
            hint="choose a time, LSN, restore point, transaction id or 'immediate', or promote",
        )


def _text_or_none(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _data_dir(value: Any, allowed_roots: Sequence[Path]) -> Path:
    text = _text_or_none(value)
    roots = ", ".join(str(r) for r in allowed_roots) or "none"
    if text is None:
        raise RequestRefused(f"data_directory is required: a new or empty directory below an allowed root ({roots})")
    if not text.startswith("/"):
        raise RequestRefused(f"data_directory {text!r} is not an absolute path")
    if ".." in PurePosixPath(text).parts or re.search(r"[\x00-\x1f\x7f]", text):
        raise RequestRefused(f"data_directory {text!r} must not contain '..' or control characters")
    if len(text) > MAX_DATA_DIR_CHARS:
        raise RequestRefused(
            f"data_directory {text!r} is {len(text)} characters; at most {MAX_DATA_DIR_CHARS} (socket paths are short)"
        )
    path = Path(os.path.normpath(text))
    if not allowed_roots:  # the policy's gap, not the operator's: it pages
        raise ParamInvalid(
            "the policy allows no data directory for a point-in-time recovery: set dr.allowed_data_roots"
        )
    if not any(path != root and path.is_relative_to(root) for root in allowed_roots):
        raise RequestRefused(f"data_directory {path} is outside the policy's allowed roots ({roots}): refused")
    return path


def _port(value: Any, port_range: tuple[int, int]) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise RequestRefused(f"port must be a whole number, got {value!r}")
    port = int(value)
    first, last = port_range
    if not first <= port <= last:
        raise RequestRefused(f"port {port} is outside the policy's range for recovered servers ({first}-{last})")
    return port


def check_pitr_host(request: PitrRequest, *, allowed_roots: Sequence[Path], port_range: tuple[int, int]) -> PitrRequest:
    """RequestRefused when the data directory or the port the operator chose cannot take the new
    cluster: the directory exists and is not empty (or leads outside its root through a symlink),
    the port is in use. PreflightFailed when no port of the range is free. Returns the request
    with the port chosen when none was given."""
    try:  # refuse_non_empty guards recover() too, where a non-empty directory is no request's fault
        refuse_non_empty(request.data_dir)
    except PreflightFailed as exc:
        raise RequestRefused(exc.message, hint=exc.hint) from None
    # realpath resolves the symlinks of the part that exists: a link below a root must not lead out.
    real = Path(os.path.realpath(request.data_dir))
    if not any(
        real.is_relative_to(os.path.realpath(root)) and real != Path(os.path.realpath(root)) for root in allowed_roots
    ):
        raise RequestRefused(
            f"data_directory {request.data_dir} resolves to {real}, outside the policy's allowed roots: refused"
        )
    if request.port is not None:
        if not port_is_free(request.port):
            raise RequestRefused(
                f"port {request.port} on 127.0.0.1 is already in use: choose another port for the recovered server"
            )
        return request
    first, last = port_range
    for port in range(first, last + 1):
        if port_is_free(port):
            return replace(request, port=port)
    raise PreflightFailed(f"no free port on 127.0.0.1 in the policy's range {first}-{last} for the recovered server")


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` and a server could bind it (as PostgreSQL does, with
    SO_REUSEADDR): a port some client connection holds as its own end is not free either."""
    if port_is_open(port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def refuse_short_space(data_dir: Path, needed_bytes: int) -> int:
    """PreflightFailed when the file system of ``data_dir`` has less than ``needed_bytes`` free;
    returns the free bytes."""
    free = shutil.disk_usage(_deepest_existing(data_dir)).free
    if free < needed_bytes:
        raise PreflightFailed(
            f"{data_dir} has {human_bytes(free)} free; the base backup alone needs {human_bytes(needed_bytes)}: refused",
            hint="free space there or choose a data directory on a larger file system",
        )
    return free


def _deepest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def describe_recovered_cluster(
    recovered: Mapping[str, Any], *, database: str, user: str, queued_at: datetime, rto_target_s: int
) -> dict[str, Any]:
    """What the operator needs once ``recover`` returned: how to connect, what was recovered, and
    the RTO (from the run's trigger to the moment the cluster was promoted, or paused)."""
    promoted = bool(recovered.get("promoted", True))
    ready_at = parse_time(str(recovered["promoted_at"] if promoted else recovered["paused_at"]))
    rto_s = round((ready_at - queued_at).total_seconds(), 3)
    port = int(recovered["port"])
    state = "promoted" if promoted else "paused at its target (read-only)"
    connect = f"psql -h 127.0.0.1 -p {port} -U {user} {database}"
    target = recovered.get("target") or {}
    described = f"{target.get('kind')} {target.get('value')}" if target.get("value") else str(target.get("kind"))
    lines = [
        f"Recovered cluster {state} on 127.0.0.1:{port}, data directory {recovered['data_dir']}",
        f"  recovered to {described} from base backup set {recovered['backup_set_id']}: last transaction replayed "
        f"{recovered.get('recovery_end_time') or 'none'}, recovery end {recovered.get('recovery_end_lsn')} "
        f"on timeline {recovered.get('timeline')}",
        f"  connect: {connect}",
        "  it has production's roles and passwords, listens on 127.0.0.1 only and never archives; production was not touched",
        f"  server log {recovered['log_file']}; stop it with pg_ctl -D {recovered['data_dir']} stop -m fast (as the server's OS user)",
    ]
    if not promoted:
        lines.append(
            "  paused: check it, then SELECT pg_promote(); opens it for writes (until then it does not survive a restart)"
        )
    lines.append(
        f"  RTO {rto_s:.0f} s: triggered {format_time(queued_at)}, {'promoted' if promoted else 'paused'} {format_time(ready_at)} "
        f"(target {rto_target_s} s)"
    )
    return {
        "state": "promoted" if promoted else "paused",
        "port": port,
        "data_dir": str(recovered["data_dir"]),
        "connect": connect,
        "backup_set_id": recovered["backup_set_id"],
        "target": dict(target),
        "recovery_end_time": recovered.get("recovery_end_time"),
        "recovery_end_lsn": recovered.get("recovery_end_lsn"),
        "timeline": recovered.get("timeline"),
        "queued_at": format_time(queued_at),
        "ready_at": format_time(ready_at),
        "rto_s": rto_s,
        "rto_target_s": rto_target_s,
        "within_rto": rto_s <= rto_target_s,
        "lines": lines,
    }


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
