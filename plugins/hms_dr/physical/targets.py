"""Recovery targets: the point a point-in-time recovery stops at, parsed and validated from what an
operator typed, and the PostgreSQL 15 settings that make the server stop there.

A target is a time (ISO-8601 with a zone), an LSN (``X/X``), a transaction id, a restore point
name (``pg_create_restore_point``), ``immediate`` (the base backup's consistent point) or
``latest`` (the end of the archived WAL). Every bad value gets one line naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hms_dr.errors import ParamInvalid
from hms_dr.wal import names as wal_names
from hms_dr.wal.names import format_lsn

MAX_RESTORE_POINT_NAME_CHARS = 63  # MAXFNAMELEN - 1: PostgreSQL truncates longer names
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FIRST_NORMAL_XID = 3
MAX_XID8 = 2**64 - 1


class TargetKind(StrEnum):
    TIME = "time"
    LSN = "lsn"
    XID = "xid"
    NAME = "name"
    IMMEDIATE = "immediate"
    LATEST = "latest"


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops. Exactly the field of its kind is set; ``inclusive`` applies to
    time, LSN and xid targets (stop just after the target rather than just before it)."""

    kind: TargetKind
    time: datetime | None = None
    lsn: int | None = None
    xid: int | None = None
    name: str | None = None
    inclusive: bool = True

    def describe(self) -> str:
        if self.kind is TargetKind.TIME:
            assert self.time is not None
            return f"time {format_time(self.time)}"
        if self.kind is TargetKind.LSN:
            assert self.lsn is not None
            return f"LSN {format_lsn(self.lsn)}"
        if self.kind is TargetKind.XID:
            return f"transaction {self.xid}"
        if self.kind is TargetKind.NAME:
            return f"restore point {self.name!r}"
        return self.kind.value

    def to_dict(self) -> dict[str, Any]:
        value: str | None = None
        if self.kind is TargetKind.TIME and self.time is not None:
            value = format_time(self.time)
        elif self.kind is TargetKind.LSN and self.lsn is not None:
            value = format_lsn(self.lsn)
        elif self.kind is TargetKind.XID:
            value = str(self.xid)
        elif self.kind is TargetKind.NAME:
            value = self.name
        return {"kind": self.kind.value, "value": value, "inclusive": self.inclusive}


def _requested_lsn(text: str) -> int:
    """An operator's LSN -> its 64-bit position (hms_dr.wal.names reads it); ParamInvalid, one
    line for the operator, otherwise."""
    try:
        return wal_names.parse_lsn(text)
    except ValueError:
        raise ParamInvalid(f"LSN {text!r} is not of the form X/X (two hexadecimal numbers, e.g. 0/3000060)") from None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_recovery_target(kind: str, value: str | None = None, *, inclusive: bool = True) -> RecoveryTarget:
    """The target an operator asked for, validated; one-line ParamInvalid otherwise."""
    try:
        target_kind = TargetKind(str(kind).strip().lower())
    except ValueError:
        choices = ", ".join(k.value for k in TargetKind)
        raise ParamInvalid(f"recovery target kind {kind!r} is not one of {choices}") from None
    text = None if value is None else str(value).strip()
    if target_kind in (TargetKind.IMMEDIATE, TargetKind.LATEST):
        if text:
            raise ParamInvalid(f"recovery target {target_kind.value!r} takes no value, got {text!r}")
        return RecoveryTarget(target_kind)
    if not text:
        raise ParamInvalid(f"recovery target {target_kind.value!r} needs a value")
    if target_kind is TargetKind.TIME:
        return RecoveryTarget(target_kind, time=_parse_time(text), inclusive=inclusive)
    if target_kind is TargetKind.LSN:
        return RecoveryTarget(target_kind, lsn=_requested_lsn(text), inclusive=inclusive)
    if target_kind is TargetKind.XID:
        return RecoveryTarget(target_kind, xid=_parse_xid(text), inclusive=inclusive)
    return RecoveryTarget(target_kind, name=_parse_name(text))


def refuse_future_target(target: RecoveryTarget, now: datetime) -> None:
    """ParamInvalid for a time target after ``now``: no WAL exists for it yet, and saying so beats
    what the store would answer (no base backup, or no WAL, that reaches it)."""
    if target.kind is TargetKind.TIME and target.time is not None and target.time > now:
        raise ParamInvalid(
            f"recovery target time {format_time(target.time)} is in the future (now {format_time(now.replace(microsecond=0))}): "
            "no WAL exists for it yet; choose a moment before now"
        )


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ParamInvalid(
            f"recovery target time {text!r} is not an ISO-8601 timestamp (e.g. 2026-11-24T03:15:00Z)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ParamInvalid(f"recovery target time {text!r} has no time zone: add Z or an offset such as +01:00")
    return moment.astimezone(UTC)


def _parse_xid(text: str) -> int:
    if not text.isdigit():
        raise ParamInvalid(f"recovery target transaction id {text!r} is not a non-negative integer")
    xid = int(text)
    if xid < FIRST_NORMAL_XID or xid > MAX_XID8:
        raise ParamInvalid(f"recovery target transaction id {xid} is out of range ({FIRST_NORMAL_XID}..{MAX_XID8})")
    return xid


def _parse_name(text: str) -> str:
    if len(text) > MAX_RESTORE_POINT_NAME_CHARS:
        raise ParamInvalid(
            f"restore point name {text[:20]!r}... is {len(text)} characters; PostgreSQL keeps at most {MAX_RESTORE_POINT_NAME_CHARS}"
        )
    if _CONTROL.search(text):
        raise ParamInvalid(f"restore point name {text!r} contains a control character")
    return text


def target_settings(target: RecoveryTarget) -> dict[str, str]:
    """The recovery_target_* settings for PostgreSQL 15 (latest: none, replay everything)."""
    settings: dict[str, str] = {}
    if target.kind is TargetKind.IMMEDIATE:
        settings["recovery_target"] = "immediate"
    elif target.kind is TargetKind.TIME:
        assert target.time is not None
        settings["recovery_target_time"] = target.time.astimezone(UTC).isoformat()
    elif target.kind is TargetKind.LSN:
        assert target.lsn is not None
        settings["recovery_target_lsn"] = format_lsn(target.lsn)
    elif target.kind is TargetKind.XID:
        settings["recovery_target_xid"] = str(target.xid)
    elif target.kind is TargetKind.NAME:
        assert target.name is not None
        settings["recovery_target_name"] = target.name
    if target.kind in (TargetKind.TIME, TargetKind.LSN, TargetKind.XID):
        settings["recovery_target_inclusive"] = "on" if target.inclusive else "off"
    return settings
