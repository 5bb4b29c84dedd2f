"""The audit trail of disaster-recovery runs: who ran what, why, with which parameters, who
approved it, and how it ended.

One JSON record per run, written to ``<cluster>/audit/<YYYY-MM-DD>/<record id>.json`` in the
primary store (and logged), never overwritten: a later write of the same run (the final outcome
after the first "started" record) gets a new record id, so the trail only grows. Parameters are
copied as given, except that any key that names a secret is masked — DR params carry table names
and targets, never credentials, but a record must not become the place a secret leaks to.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hms_dr.catalog import audit_key, audit_prefix

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MASK = "***"


@dataclass(frozen=True)
class Approval:
    """One human decision on a DR run (Airflow's human-in-the-loop approval)."""

    by: str
    at: datetime
    decision: str  # "approved" | "rejected" | "refused" (an answer that does not count: see hms_dr.dr.approval)
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "at": _iso(self.at), "decision": self.decision, "comment": self.comment}


@dataclass(frozen=True)
class AuditRecord:
    """What an auditor asks about one DR run."""

    dag_id: str
    run_id: str
    triggered_by: str  # the Airflow user, or "scheduler" for a scheduled run
    started_at: datetime
    reason: str
    params: Mapping[str, Any]
    event: str  # "started" | "approved" | "rejected" | "refused" | "succeeded" | "failed"
    outcome: str = ""  # one line
    approvals: tuple[Approval, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)  # plain data: tables, row counts, RTO...
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "triggered_by": self.triggered_by,
            "started_at": _iso(self.started_at),
            "recorded_at": _iso(self.recorded_at),
            "event": self.event,
            "reason": self.reason,
            "params": mask_secrets(self.params),
            "approvals": [a.to_dict() for a in self.approvals],
            "outcome": self.outcome,
            "details": mask_secrets(self.details),
        }


def mask_secrets(data: Any) -> Any:
    """A copy of ``data`` with the value of every key that names a secret replaced by ``***``."""
    if isinstance(data, Mapping):
        return {str(k): (MASK if _SECRET_KEY.search(str(k)) else mask_secrets(v)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_secrets(v) for v in data]
    return data


def record_key(cluster: str, record: AuditRecord) -> str:
    """Where a record goes: by day, then run, event and time, so a listing reads as a timeline."""
    day = record.recorded_at.astimezone(UTC).strftime("%Y-%m-%d")
    moment = record.recorded_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = _UNSAFE.sub("_", f"{moment}-{record.dag_id}-{record.run_id}-{record.event}")
    return audit_key(cluster, day, name)


def write_audit_record(store: Store, cluster: str, record: AuditRecord) -> str:
    """Store the record (never overwriting one) and log it in one line; returns its key."""
    document = record.to_dict()
    key = record_key(cluster, record)
    store.put_bytes(key, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    log.info(
        "audit: %s %s of %s run %s by %s (reason: %s) -> %s",
        record.event,
        record.outcome or "",
        record.dag_id,
        record.run_id,
        record.triggered_by,
        record.reason,
        store.describe(key),
    )
    return key


def read_audit_records(store: Store, cluster: str) -> list[dict[str, Any]]:
    """Every audit record in the store, oldest first (the status page and tests read them)."""
    prefix = audit_prefix(cluster)
    return [json.loads(store.get_bytes(obj.key)) for obj in store.list(prefix) if obj.key.endswith(".json")]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
