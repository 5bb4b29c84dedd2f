"""How a DR run ended, decided from what its steps handed on: the event of its final audit record
(``succeeded``, ``rejected`` or ``failed``), the one-line outcome and the details kept with it.

The first failing step's reason wins; then a swap that committed and was checked; then a
rejection; then (hms_dr_restore) a restore that asked for no swap. Anything else — a step killed,
timed out or skipped — is a failure too: a run never looks successful by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hms_dr.dr.after_swap import AfterSwapChecks
from hms_dr.dr.approval import ApprovalVerdict
from hms_dr.dr.approved_swap import SwapDone
from hms_dr.dr.check_restored import RestoredTablesChecked
from hms_dr.dr.pitr import PitrPlan, PitrReport
from hms_dr.dr.restore_into_target import RestoredIntoTarget
from hms_dr.dr.validated import ValidatedRestore
from hms_dr.records import Record

UNFINISHED = "a step did not finish (killed, timed out or skipped): see the run's task logs"


@dataclass(frozen=True)
class RunOutcome(Record):
    event: str  # "succeeded" | "rejected" | "failed"
    outcome: str  # one line
    details: dict[str, Any] = field(default_factory=dict)


def first_failure(failures: Sequence[tuple[str, str | None]]) -> str | None:
    """``task_id: reason`` of the first step (in the pipeline's order) that recorded a failure."""
    failed = [(task_id, line) for task_id, line in failures if line]
    if not failed:
        return None
    task_id, line = failed[0]
    return f"{task_id}: {line}"


def restore_outcome(
    *,
    plan: ValidatedRestore | None,
    restored: RestoredIntoTarget | None,
    checked: RestoredTablesChecked | None,
    swapped: SwapDone | None,
    after: AfterSwapChecks | None,
    approval: ApprovalVerdict | None,
    failures: Sequence[tuple[str, str | None]],
) -> RunOutcome:
    """hms_dr_restore's end: ``failures`` are (task id, recorded failure line) in the steps' order."""
    details: dict[str, Any] = {
        "plan": plan.to_xcom() if plan else None,
        "restored": restored.to_xcom() if restored else None,
        "checks": checked.checks.to_xcom() if checked and checked.checks else None,
        "rows_restored": checked.rows_restored if checked else None,
        "rows_now": checked.rows_now if checked else None,
        "swap": swapped.to_xcom() if swapped else None,
        "after_swap": after.to_xcom() if after else None,
    }
    failed = first_failure(failures)
    if failed:
        return RunOutcome("failed", failed, details)
    if swapped and after:
        return RunOutcome(
            "succeeded",
            f"swapped {', '.join(t['table'] for t in swapped.tables)} into production; the replaced "
            f"tables are in {swapped.quarantine_schema}",
            details,
        )
    if approval and approval.decision == "rejected":
        return RunOutcome(
            "rejected",
            f"swap rejected by {approval.by}: production unchanged; the restored tables stay in "
            f"{plan and plan.staging_schema}",
            details,
        )
    if checked is not None and plan and not plan.swap_into_production:
        return RunOutcome(
            "succeeded", f"restored into {restored.restored_into if restored else None} (no swap asked for)", details
        )
    return RunOutcome("failed", UNFINISHED, details)


def pitr_outcome(
    *, plan: PitrPlan | None, reported: PitrReport | None, failures: Sequence[tuple[str, str | None]]
) -> RunOutcome:
    """hms_dr_pitr's end: succeeded only when the connection was reported and no step failed."""
    failed = first_failure(failures)
    if reported and not failed:
        return RunOutcome(
            "succeeded",
            f"{reported.state} on 127.0.0.1:{reported.port} ({reported.data_dir}), RTO {reported.rto_s:.0f} s",
            {"report": {name: value for name, value in reported.to_xcom().items() if name != "lines"}},
        )
    return RunOutcome("failed", failed or UNFINISHED, {"request": plan.to_xcom() if plan else None})
