"""The check of production after the swap committed: each name reaches the restored table, the
old one is quarantined, keys, views, owner, grants and sequences follow (``verify.check_after_swap``).

A swap task that ended without a result never swapped: it was set to success by hand (Mark
Success, or a PATCH of its state). That is refused, and the caller's ``on_unapproved`` audits it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hms_dr.errors import ApprovalRefused, QualityCheckFailed
from hms_dr.pgtools import ConnectionInfo
from hms_dr.records import Record

if TYPE_CHECKING:
    from hms_dr.dr.approved_swap import SwapDone

log = logging.getLogger(__name__)

SWAP_TASK_ID = "swap_into_production"  # asks for the approval, then swaps
UNAPPROVED_SWAP = (
    f"{SWAP_TASK_ID} was set to success without an approval answered in its form (Mark Success, or a "
    "PATCH of its state): nothing was swapped, production unchanged"
)


@dataclass(frozen=True)
class AfterSwapChecks(Record):
    passed: bool
    checks: list[dict[str, Any]]
    failed: list[str]


def check_production_after_swap(
    swapped: SwapDone | None, *, admin: ConnectionInfo, on_unapproved: Callable[[str], object]
) -> AfterSwapChecks:
    """QualityCheckFailed when production fails a check after the commit."""
    from hms_dr.dr.verify import check_after_swap

    if swapped is None:
        on_unapproved(UNAPPROVED_SWAP)
        raise ApprovalRefused(
            UNAPPROVED_SWAP, hint="trigger a new run and approve the swap in its form (Required Actions)"
        )
    outcome = AfterSwapChecks.from_xcom(check_after_swap(admin, swapped.to_xcom()))
    for check in outcome.checks:
        log.info("%s %s: %s", "ok  " if check["passed"] else "FAIL", check["check"], check["target"])
    if not outcome.passed:
        raise QualityCheckFailed(
            f"the swap committed but production fails {len(outcome.failed)} check(s): {'; '.join(outcome.failed[:5])}"
        )
    return outcome
