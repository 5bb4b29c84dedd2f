"""One offsite sync pass: for each kind, one listing of each store, a plan, then the copies.

Each set is its own unit: a set that cannot be copied or repaired (a damaged primary payload, a
locked damaged copy) is recorded and the pass goes on; the pass raises one OffsiteCopyFailed at the
end naming them. A store that stops answering (StoreUnavailable) ends the pass at once: Airflow
retries it, and the rerun resumes from what is already proven offsite.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from hms_dr.catalog import SetFolder, read_set_folders
from hms_dr.errors import HmsDrError, OffsiteCopyFailed, StoreUnavailable
from hms_dr.manifest import BackupKind
from hms_dr.offsite.copy import SetCopy, copy_set, repair_set, reverify_set
from hms_dr.offsite.freshness import NewestOffsite, NewestPrimary, newest_primary, read_newest_offsite
from hms_dr.offsite.plan import KindCopyPlan, plan_kind_copies
from hms_dr.progress import ByteCounter, ProgressLog
from hms_dr.records import Record
from hms_dr.units import human_bytes, human_rate

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

MIB = 1 << 20


@dataclass(frozen=True)
class KindSyncReport(Record):
    """One kind of a pass: what was copied, repaired and re-verified, and the newest set on each side."""

    primary_sets: int
    offsite_sets: int
    copied_count: int
    copied: list[str]  # WAL: the first and last name only
    repaired: list[str]
    reverified: int
    reused_payloads: int
    too_old: int
    copied_bytes: int
    seconds: float
    mib_per_s: float | None
    newest_offsite: NewestOffsite | None
    newest_primary: NewestPrimary | None
    failures: list[str]


@dataclass(frozen=True)
class SyncReport(Record):
    """A whole pass (copy_missing_sets' XCom; check_offsite_freshness judges its kinds)."""

    kinds: dict[str, KindSyncReport]
    copied_bytes: int
    seconds: float


def sync_offsite(
    primary: Store,
    offsite: Store,
    cluster: str,
    *,
    window: timedelta,
    now: datetime,
    reverify_weeks: int,
    kinds: Sequence[BackupKind] = tuple(BackupKind),
) -> SyncReport:
    """Copy every complete set of ``kinds`` the offsite store lacks, repair and re-verify copies;
    a report per kind (what was copied, sizes, throughput, the newest set on each side)."""
    started = time.monotonic()
    report: dict[str, KindSyncReport] = {}
    failures: list[str] = []
    for kind in kinds:
        report[kind.value] = sync_kind(
            primary, offsite, cluster, kind, window=window, now=now, reverify_weeks=reverify_weeks
        )
        failures += report[kind.value].failures
    seconds = time.monotonic() - started
    copied_bytes = sum(k.copied_bytes for k in report.values())
    log.info(
        "offsite sync %s -> %s: %d set(s) copied, %d repaired, %d re-verified; %s copied in %.1f s (%s overall)",
        primary.url,
        offsite.url,
        sum(k.copied_count for k in report.values()),
        sum(len(k.repaired) for k in report.values()),
        sum(k.reverified for k in report.values()),
        human_bytes(copied_bytes),
        seconds,
        human_rate(copied_bytes, seconds),
    )
    if failures:
        raise OffsiteCopyFailed(
            f"{len(failures)} set(s) could not be copied or repaired offsite; first: {failures[0]}",
            hint="every other set was copied and proven; the log names each failed set",
        )
    return SyncReport(kinds=report, copied_bytes=copied_bytes, seconds=round(seconds, 3))


def sync_kind(
    primary: Store,
    offsite: Store,
    cluster: str,
    kind: BackupKind,
    *,
    window: timedelta,
    now: datetime,
    reverify_weeks: int,
) -> KindSyncReport:
    """One kind: plan from the two listings, then copy, repair and re-verify set by set."""
    started = time.monotonic()
    primary_folders = read_set_folders(primary, cluster, kind)
    offsite_folders = read_set_folders(offsite, cluster, kind)
    plan = plan_kind_copies(
        kind, primary_folders, offsite_folders, window=window, now=now, reverify_weeks=reverify_weeks
    )
    log.info(
        "%s: %d complete set(s) on the primary, %d offsite; %d to copy, %d to repair, %d to re-verify, "
        "%d outside the %d-day offsite window (not copied)",
        kind.value,
        sum(f.complete for f in primary_folders.values()),
        sum(f.complete for f in offsite_folders.values()),
        len(plan.to_copy),
        len(plan.to_repair),
        len(plan.to_reverify),
        len(plan.too_old),
        window.days,
    )
    done: list[SetCopy] = []
    failures: list[str] = []

    def attempt(backup_set_id: str, step: Callable[[], SetCopy]) -> None:
        try:
            outcome = step()
        except StoreUnavailable:
            raise  # the whole pass is retried; what is proven offsite stays
        except HmsDrError as exc:
            failures.append(f"{kind.value}/{backup_set_id}: {exc.message}")
            log.error("offsite %s/%s failed: %s", kind.value, backup_set_id, exc.message)
            if exc.hint:
                log.error("HINT: %s", exc.hint)
            return
        done.append(outcome)
        _log_set(outcome)

    primary_complete = {set_id for set_id, f in primary_folders.items() if f.complete}
    counted = ByteCounter()
    to_copy_bytes = sum(o.size_bytes for set_id in plan.to_copy for o in primary_folders[set_id].objects.values())
    with ProgressLog(
        f"offsite copy of {len(plan.to_copy)} {kind.value} set(s)", lambda: counted.value, expected_bytes=to_copy_bytes
    ):
        for set_id in plan.to_copy:
            leftovers = offsite_folders[set_id].objects if set_id in offsite_folders else {}
            attempt(set_id, partial(copy_set, primary, offsite, cluster, kind, set_id, leftovers, counted))
    for set_id, names in plan.to_repair.items():
        attempt(set_id, partial(repair_set, primary, offsite, cluster, kind, set_id, names))
    for set_id in plan.to_reverify:
        attempt(
            set_id,
            partial(reverify_set, primary, offsite, cluster, kind, set_id, primary_has_set=set_id in primary_complete),
        )
    return _kind_report(
        offsite, cluster, kind, plan, primary_folders, offsite_folders, done, failures, time.monotonic() - started
    )


def _log_set(outcome: SetCopy) -> None:
    if outcome.action == "verified":
        return  # reverify_set logged it
    # WAL: one set per segment, so one line per set would bury the rest; the kind's summary names them.
    level = logging.DEBUG if outcome.kind is BackupKind.WAL else logging.INFO
    log.log(
        level,
        "%s %s/%s: %s in %.2f s (%s), sha256 proven offsite%s",
        outcome.action,
        outcome.kind.value,
        outcome.backup_set_id,
        human_bytes(outcome.copied_bytes),
        outcome.seconds,
        human_rate(outcome.copied_bytes, outcome.seconds),
        f"; {len(outcome.reused)} payload(s) an interrupted run had stored were proven and kept"
        if outcome.reused
        else "",
    )


def _kind_report(
    offsite: Store,
    cluster: str,
    kind: BackupKind,
    plan: KindCopyPlan,
    primary_folders: dict[str, SetFolder],
    offsite_folders: dict[str, SetFolder],
    done: list[SetCopy],
    failures: list[str],
    seconds: float,
) -> KindSyncReport:
    copied = sorted(o.backup_set_id for o in done if o.action == "copied")
    copied_bytes = sum(o.copied_bytes for o in done)
    copy_seconds = sum(o.seconds for o in done if o.action != "verified")
    if copied:
        log.info(
            "%s: copied %d set(s) (%s … %s), %s in %.1f s (%s)",
            kind.value,
            len(copied),
            copied[0],
            copied[-1],
            human_bytes(copied_bytes),
            copy_seconds,
            human_rate(copied_bytes, copy_seconds),
        )
    finished = {o.backup_set_id: o.finished_at for o in done}
    offsite_complete = {set_id for set_id, f in offsite_folders.items() if f.complete} | set(copied)
    return KindSyncReport(
        primary_sets=sum(f.complete for f in primary_folders.values()),
        offsite_sets=len(offsite_complete),
        copied_count=len(copied),
        # WAL sets are named after their segment: the first and last say which range went across.
        copied=copied if kind is not BackupKind.WAL else copied[:1] + copied[-1:],
        repaired=sorted(o.backup_set_id for o in done if o.action == "repaired"),
        reverified=sum(1 for o in done if o.action == "verified"),
        reused_payloads=sum(len(o.reused) for o in done),
        too_old=len(plan.too_old),
        copied_bytes=copied_bytes,
        seconds=round(seconds, 3),
        mib_per_s=round(copied_bytes / MIB / copy_seconds, 1) if copy_seconds > 0 else None,
        newest_offsite=read_newest_offsite(offsite, cluster, kind, max(offsite_complete, default=None), finished),
        newest_primary=newest_primary(primary_folders),
        failures=failures,
    )
