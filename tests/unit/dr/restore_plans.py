"""Validated hms_dr_restore plans for the engine's unit tests, made the way the first task makes
them: the params parsed and resolved against facts (no server, no store)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hms_dr.dr.request import Source, TargetFacts, parse_request, resolve_request, run_key
from hms_dr.dr.validated import RecoveryPlanCheck, ValidatedRestore
from hms_dr.scratch.database import ScratchDatabaseKind, scratch_database_name

RUN_ID = "manual__2026-11-24T14:05:00+00:00"
NOW = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)
REASON = "rows deleted from appointments at 14:00 by a bad cleanup job"
SET_ID = "20261124T020001Z"
FACTS = TargetFacts(
    production_database="hospital_management",
    production_tables=frozenset({"public.appointments", "public.billing", "public.patients"}),
    existing_schemas=frozenset({"public", "pg_catalog", "information_schema"}),
)
CLUSTER_FACTS = {
    "home": "/var/lib/hms-dr/pitr/dr-restore/abc",
    "data_dir": "/var/lib/hms-dr/pitr/dr-restore/abc/data",
    "socket_dir": "/var/lib/hms-dr/pitr/dr-restore/abc/sockets",
    "log_file": "/var/lib/hms-dr/pitr/dr-restore/abc/log/server.log",
}


def validated(**params: Any) -> ValidatedRestore:
    """A validated plan: a logical set by default, a point in time with source=point_in_time."""
    given = {"tables": ["appointments"], "reason": REASON, **params}
    request = parse_request(given, run_id=RUN_ID, now=NOW)
    key = run_key(RUN_ID)
    if request.source is Source.LOGICAL_BACKUP:
        plan = resolve_request(
            request,
            FACTS,
            set_tables=sorted(FACTS.production_tables),
            backup_set_id=SET_ID,
            where=f"backup set {SET_ID}",
        )
        return ValidatedRestore.of(
            plan,
            run_key=key,
            scratch_database=scratch_database_name(ScratchDatabaseKind.DR_SOURCE, key),
            scratch_cluster=None,
            recovery_plan=None,
        )
    plan = resolve_request(
        request, FACTS, set_tables=None, backup_set_id=None, where="production's database hospital_management"
    )
    recovery = RecoveryPlanCheck(
        target=dict(request.recovery_target or {}),
        backup_set_id="20261124T030000Z",
        plan_reason="the newest base backup before the target",
        wal_files=7,
    )
    return ValidatedRestore.of(
        plan, run_key=key, scratch_database=None, scratch_cluster=CLUSTER_FACTS, recovery_plan=recovery
    )


def point_in_time(**params: Any) -> ValidatedRestore:
    return validated(source="point_in_time", target_time="2026-11-24T13:59:00Z", **params)
