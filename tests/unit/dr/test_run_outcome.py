"""How a DR run ends in its final audit record (hms_dr.dr.outcome): the first failing step wins;
a swap counts only when it committed and production passed its checks; a rejection leaves
production unchanged; a restore without a swap succeeds once checked; anything else failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from restore_plans import validated

from hms_dr.dr.after_swap import AfterSwapChecks
from hms_dr.dr.approval import ApprovalVerdict
from hms_dr.dr.approved_swap import SwapDone
from hms_dr.dr.check_restored import QualityChecks, RestoredTablesChecked
from hms_dr.dr.outcome import UNFINISHED, pitr_outcome, restore_outcome
from hms_dr.dr.pitr import PitrReport
from hms_dr.dr.restore_into_target import RestoredIntoTarget

AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
STEPS = (
    "validate_request",
    "restore_into_target",
    "check_restored_tables",
    "swap_into_production",
    "check_production_after_swap",
)
RESTORED = RestoredIntoTarget(
    started_at=AT,
    source="scratch database hms_dr_scratch_x on 10.0.0.9:5432 from set 20261124T020001Z",
    restored_into="schema dr_staging_x of hospital_management",
    sql_bytes=81920,
    steps_s={"restore_scratch_database": 12.5, "copy_into_target": 3.25},
)
PASSED = QualityChecks(passed=True, checks=[], failed=[], note="against the baselines of backup set 20261124T020001Z")
CHECKED = RestoredTablesChecked(
    rows_restored={"public.appointments": 8538},
    checks=PASSED,
    approval_body="body",
    swap_plan={"digest": "a3" * 32},
    rows_now={"public.appointments": 7723},
)
SWAPPED = SwapDone(
    quarantine_schema="dr_quarantine_x",
    staging_schema="dr_staging_x",
    digest="a3" * 32,
    seconds=0.4,
    statements=12,
    staging_schema_dropped=True,
    warnings=[],
    tables=[{"table": "public.appointments", "rows_restored": 8538}],
)
AFTER = AfterSwapChecks(passed=True, checks=[], failed=[])


def failures(**lines: str) -> list[tuple[str, str | None]]:
    return [(step, lines.get(step)) for step in STEPS]


def ended(**given: Any) -> tuple[str, str]:
    values: dict[str, Any] = {
        "plan": validated(swap_into_production=True),
        "restored": RESTORED,
        "checked": CHECKED,
        "swapped": None,
        "after": None,
        "approval": None,
        "failures": failures(),
        **given,
    }
    outcome = restore_outcome(**values)
    return outcome.event, outcome.outcome


def test_a_committed_and_checked_swap_succeeded() -> None:
    assert ended(swapped=SWAPPED, after=AFTER) == (
        "succeeded",
        "swapped public.appointments into production; the replaced tables are in dr_quarantine_x",
    )


def test_failed_checks_fail_the_run_with_their_reason() -> None:
    line = "QualityCheckFailed: the restored tables fail 1 check(s): row_count of dr_staging_x.appointments"
    assert ended(checked=None, failures=failures(check_restored_tables=line)) == (
        "failed",
        f"check_restored_tables: {line}",
    )


def test_the_first_failing_step_wins() -> None:
    assert ended(
        failures=failures(restore_into_target="ToolFailed: pg_restore", check_production_after_swap="later")
    ) == ("failed", "restore_into_target: ToolFailed: pg_restore")


def test_a_refused_approval_fails_the_run_with_the_refusal() -> None:
    refused = ApprovalVerdict("refused", "alice", AT, "alice triggered this run and may not approve its swap")
    line = "ApprovalRefused: swap refused, production unchanged: alice triggered this run and may not approve its swap"
    assert ended(approval=refused, failures=failures(swap_into_production=line)) == (
        "failed",
        f"swap_into_production: {line}",
    )


def test_a_swap_that_failed_under_its_locks_fails_the_run() -> None:
    approved = ApprovalVerdict("approved", "bob", AT, "approved plan a3a3")
    line = "SwapRefused: swap not made, production unchanged: the tables' locks were not granted within 30 s"
    assert ended(approval=approved, failures=failures(swap_into_production=line)) == (
        "failed",
        f"swap_into_production: {line}",
    )


def test_a_rejection_leaves_production_unchanged() -> None:
    plan = validated(swap_into_production=True)
    rejected = ApprovalVerdict("rejected", "bob", AT, "rejected in the approval form")
    assert ended(plan=plan, approval=rejected) == (
        "rejected",
        f"swap rejected by bob: production unchanged; the restored tables stay in {plan.staging_schema}",
    )


def test_a_restore_without_a_swap_succeeds_once_checked() -> None:
    assert ended(plan=validated(), checked=CHECKED) == (
        "succeeded",
        "restored into schema dr_staging_x of hospital_management (no swap asked for)",
    )


def test_a_swap_asked_for_but_never_made_is_a_failure_not_a_success() -> None:
    assert ended() == ("failed", UNFINISHED)  # swap task skipped or killed: no failure line, no swap
    assert ended(swapped=SWAPPED) == ("failed", UNFINISHED)  # committed, but production never checked


def test_the_details_keep_what_each_step_handed_on() -> None:
    details = restore_outcome(
        plan=validated(swap_into_production=True),
        restored=RESTORED,
        checked=CHECKED,
        swapped=SWAPPED,
        after=AFTER,
        approval=None,
        failures=failures(),
    ).details
    assert details["plan"]["tables"] == ["public.appointments"] and details["restored"]["sql_bytes"] == 81920
    assert details["checks"]["note"] == PASSED.note and details["rows_restored"] == {"public.appointments": 8538}
    assert details["swap"]["tables"][0]["rows_restored"] == 8538 and details["after_swap"]["passed"] is True


def report() -> PitrReport:
    return PitrReport(
        state="promoted",
        port=5433,
        data_dir="/var/lib/hms-dr/pitr/s2",
        connect="psql -h 127.0.0.1 -p 5433",
        backup_set_id="20261124T030000Z",
        target={"kind": "time", "value": "2026-11-24T14:59:00Z"},
        recovery_end_time=None,
        recovery_end_lsn="0/3000060",
        timeline=2,
        queued_at="2026-11-24T15:00:00Z",
        ready_at="2026-11-24T15:13:32Z",
        rto_s=812.4,
        rto_target_s=14400,
        within_rto=True,
        lines=["..."],
    )


def test_a_pitr_run_succeeds_only_when_its_connection_was_reported_and_nothing_failed() -> None:
    done = pitr_outcome(plan=None, reported=report(), failures=[("validate_request", None), ("recover_cluster", None)])
    assert (done.event, done.outcome) == (
        "succeeded",
        "promoted on 127.0.0.1:5433 (/var/lib/hms-dr/pitr/s2), RTO 812 s",
    )
    assert done.details["report"]["rto_s"] == 812.4 and "lines" not in done.details["report"]
    failed = pitr_outcome(
        plan=None, reported=None, failures=[("validate_request", None), ("recover_cluster", "ToolFailed: x")]
    )
    assert (failed.event, failed.outcome) == ("failed", "recover_cluster: ToolFailed: x")
    assert pitr_outcome(plan=None, reported=None, failures=[]).outcome == UNFINISHED
