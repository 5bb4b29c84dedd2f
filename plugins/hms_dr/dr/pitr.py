"""hms_dr_pitr (runbook scenario 2): a point-in-time recovery into a NEW cluster on this host.

``validate_pitr`` checks every param again, this host (the data directory new or empty below an
allowed root, the port free, room for the base backup) and the engine's recovery plan before
anything is created; ``recover_new_cluster`` recovers from exactly the base backup validated;
``report_recovered_cluster`` says how to connect and what the RTO was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr.records import Record
from hms_dr.scratch.workdir import WorkPurpose, work_folder

if TYPE_CHECKING:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import DrPolicy, StagingPolicy
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PitrPlan(Record):
    """The validated request (field names: ``PitrRequest.to_dict()``'s) and its recovery plan."""

    target: dict[str, Any]  # RecoveryTarget.to_dict()
    target_described: str
    data_dir: Path
    port: int | None
    backup_set_id: str | None  # as asked (None: automatic)
    promote: bool
    reason: str
    plan: dict[str, Any]  # physical.recovery.check_recovery's plan: backup_set_id, plan_reason, wal_files, ...
    free_bytes: int

    @property
    def base_backup_set_id(self) -> str:
        """The set the plan chose: the recovery uses it even if a newer one arrived since."""
        return str(self.plan["backup_set_id"])


@dataclass(frozen=True)
class PitrReport(Record):
    """How to connect to the recovered cluster, and the RTO (``describe_recovered_cluster``)."""

    state: str  # "promoted" | "paused"
    port: int
    data_dir: str
    connect: str
    backup_set_id: str
    target: dict[str, Any]
    recovery_end_time: str | None
    recovery_end_lsn: str | None
    timeline: Any
    queued_at: str
    ready_at: str
    rto_s: float
    rto_target_s: int
    within_rto: bool
    lines: list[str]


def pitr_work_dir(staging: StagingPolicy) -> Path:
    return work_folder(staging.dir, WorkPurpose.PITR)


def validate_pitr(
    params: Mapping[str, Any],
    *,
    cluster_name: str,
    dr: DrPolicy,
    staging: StagingPolicy,
    store: Callable[[], Store],
    decryption_key: Callable[[], DecryptionKey],
    now: datetime,
) -> PitrPlan:
    """RequestRefused for what the operator can fix by asking differently; nothing is created.
    The store and the key are asked for only once the params and the host passed."""
    from hms_dr.physical.recovery import check_recovery
    from hms_dr.physical.request import check_pitr_host, read_pitr_request, refuse_short_space

    request = read_pitr_request(params, allowed_roots=dr.allowed_data_roots, port_range=dr.pitr_port_range, now=now)
    request = check_pitr_host(request, allowed_roots=dr.allowed_data_roots, port_range=dr.pitr_port_range)
    plan = check_recovery(
        store(),
        cluster_name,
        request.target,
        decryption_key=decryption_key(),
        staging_dir=pitr_work_dir(staging),
        backup_set_id=request.backup_set_id,
    )
    free_bytes = refuse_short_space(request.data_dir, int(plan["base_plain_bytes"]))
    log.info(
        "point-in-time recovery of %s to %s into %s on port %d: base backup set %s (%s), %d WAL file(s)",
        cluster_name,
        request.target.describe(),
        request.data_dir,
        request.port,
        plan["backup_set_id"],
        plan["plan_reason"],
        plan["wal_files"],
    )
    return PitrPlan.from_xcom({**request.to_dict(), "plan": plan, "free_bytes": free_bytes})


def recover_new_cluster(
    plan: PitrPlan,
    *,
    store: Store,
    cluster_name: str,
    dr: DrPolicy,
    staging: StagingPolicy,
    decryption_key: DecryptionKey,
) -> dict[str, Any]:
    """The recovery engine's result (``physical.recovery.recover``): base backup proven and
    extracted, WAL replayed to the target, the new cluster promoted (or paused at the target) on
    127.0.0.1:<port>; production is not touched."""
    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import parse_recovery_target

    if plan.port is None:
        raise ValueError("the validated plan names the port (check_pitr_host chose it)")
    return recover(
        store,
        cluster_name,
        parse_recovery_target(
            plan.target["kind"], plan.target["value"], inclusive=bool(plan.target.get("inclusive", True))
        ),
        data_dir=plan.data_dir,
        port=plan.port,
        decryption_key=decryption_key,
        staging_dir=pitr_work_dir(staging),
        backup_set_id=plan.base_backup_set_id,
        timeout_s=max(60.0, dr.pitr_execution_timeout_min * 60 - 60),
        promote=plan.promote,
    )


def report_recovered_cluster(
    recovered: Mapping[str, Any], *, database: str, user: str, queued_at: datetime, rto_minutes: int
) -> PitrReport:
    from hms_dr.physical.request import describe_recovered_cluster

    report = PitrReport.from_xcom(
        describe_recovered_cluster(
            recovered, database=database, user=user, queued_at=queued_at, rto_target_s=rto_minutes * 60
        )
    )
    for line in report.lines:
        log.info("%s", line)
    if not report.within_rto:
        log.warning("RTO %.0f s is over the target of %d s", report.rto_s, report.rto_target_s)
    return report
