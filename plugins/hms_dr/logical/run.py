"""What one logical run hands on, from the dumps to the read-back and the manifests: a typed
record that crosses XCom as plain JSON (``to_xcom``/``from_xcom``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hms_dr.manifest import BackupKind, Payload
from hms_dr.records import Record


@dataclass(frozen=True)
class StoredPayload(Record):
    """One stored payload of a dump and where it is."""

    key: str
    payload: Payload


@dataclass(frozen=True)
class StoredDump(Record):
    """One dump of the run, stored but not yet published: one payload, or one per file of a
    directory-format dump (``archive_format``, the manifest's field of that name)."""

    kind: BackupKind
    archive_format: str | None  # None: a plain SQL export
    payloads: list[StoredPayload]
    verification: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class LogicalRun(Record):
    """Every dump of one run and what its manifests record (take_logical_backup's result)."""

    backup_set_id: str
    cluster: str
    database: str
    started_at: datetime
    finished_at: datetime
    server: dict[str, Any]
    data_only_tables: list[str]
    snapshot: dict[str, Any]
    tools: dict[str, Any]
    compression: dict[str, Any]
    encryption: dict[str, Any]
    baselines: dict[str, Any]
    dumps: list[StoredDump]
