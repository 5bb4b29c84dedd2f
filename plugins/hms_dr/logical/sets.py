"""The sets one logical run publishes: whole database, schema-only and data-only.

Each gets its own manifest with the fields of its kind; the exports name the whole-database set
as their parent. Manifests are written exports first and the whole-database set last, so the
set the restore test and the Asset event point at is only visible once the rest is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hms_dr.logical.run import LogicalRun, StoredDump
from hms_dr.manifest import ARCHIVE_FORMAT_FIELD, BackupKind
from hms_dr.publish import publish_set

if TYPE_CHECKING:
    from hms_dr.store import Store


def manifest_extra(result: LogicalRun, dump: StoredDump) -> dict[str, Any]:
    """The kind-specific fields of one set's manifest, from what take_logical_backup returned.

    The whole-database set carries every baseline; the data-only set the baselines of its own
    tables; the schema-only set the table structure (columns) without row counts.
    """
    kind = dump.kind
    baselines = result.baselines
    if kind is BackupKind.LOGICAL:
        kind_baselines: dict[str, Any] = baselines
    elif kind is BackupKind.DATA:
        listed = set(result.data_only_tables)
        kind_baselines = {
            **baselines,
            "tables": {n: t for n, t in baselines["tables"].items() if n in listed},
            "views": {},
        }
    else:
        kind_baselines = {
            **baselines,
            "tables": {n: {k: v for k, v in t.items() if k != "rows"} for n, t in baselines["tables"].items()},
            "views": {},
        }
    extra: dict[str, Any] = {
        "database": result.database,
        "server": result.server,
        "tools": result.tools,
        "snapshot": result.snapshot,
        "compression": result.compression,
        "encryption": result.encryption,
        "verification": dump.verification,
        "baselines": kind_baselines,
    }
    if dump.archive_format is not None:
        extra[ARCHIVE_FORMAT_FIELD] = dump.archive_format
    if kind is not BackupKind.LOGICAL:
        extra["parent"] = {"kind": BackupKind.LOGICAL.value, "backup_set_id": result.backup_set_id}
    return extra


def publish_logical_sets(store: Store, result: LogicalRun, producer: Mapping[str, Any]) -> dict[str, str]:
    """Write every manifest of the run (exports first); kind -> manifest key."""
    manifests: dict[str, str] = {}
    for dump in sorted(result.dumps, key=lambda d: d.kind is BackupKind.LOGICAL):
        manifests[dump.kind.value] = publish_set(
            store,
            kind=dump.kind,
            cluster=result.cluster,
            backup_set_id=result.backup_set_id,
            started_at=result.started_at,
            finished_at=result.finished_at,
            payloads=[stored.payload for stored in dump.payloads],
            extra={**manifest_extra(result, dump), "producer": dict(producer)},
        )
    return manifests
