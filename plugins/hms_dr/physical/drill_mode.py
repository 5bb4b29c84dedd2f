"""Whether a restore test can run its physical drill: a drill recovers a base backup to the daily
set's snapshot LSN, so it needs a base backup consistent before that LSN. On a new install there
is none yet (the first daily set comes before the first weekly base backup): the test then runs
logical only and says why, instead of failing every night until Sunday. A pure decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hms_dr.catalog import BackupSet
from hms_dr.errors import BackupChainBroken, ManifestInvalid
from hms_dr.physical.chain import resolve_chain
from hms_dr.physical.recoveryplan import base_backup_of
from hms_dr.policy import RestoreTestMode
from hms_dr.wal.names import format_lsn, parse_lsn


@dataclass(frozen=True)
class DrillModeChoice:
    """The mode a restore test runs in, and why it differs from the one asked for (or None)."""

    mode: RestoreTestMode
    fallback_reason: str | None = None


def choose_drill_mode(
    requested: RestoreTestMode, daily_set: BackupSet, base_sets: Sequence[BackupSet]
) -> DrillModeChoice:
    """``requested``, or logical only when no base backup in ``base_sets`` can reach the daily set."""
    if not requested.physical:
        return DrillModeChoice(requested)
    snapshot_lsn = (daily_set.manifest.body.get("snapshot") or {}).get("wal_lsn")
    if not snapshot_lsn:
        return DrillModeChoice(requested)  # the drill's planning refuses such a set, naming it
    usable = []
    by_id = {backup_set.backup_set_id: backup_set for backup_set in base_sets}
    for backup_set in base_sets:
        try:
            resolve_chain(backup_set, by_id)  # an incremental is usable only with every link before it
            usable.append(base_backup_of(backup_set))
        except (ManifestInvalid, BackupChainBroken):
            continue  # recovery skips it too, and says so when it plans
    target = parse_lsn(str(snapshot_lsn))
    fallback = f"mode {requested.value} runs logical only"
    if not usable:
        return DrillModeChoice(
            RestoreTestMode.LOGICAL,
            f"{fallback}: the store holds no base backup set yet "
            "(hms_weekly_base_backup has not run), so there is nothing to drill",
        )
    if not any(base.stop_lsn <= target for base in usable):
        oldest = min(usable, key=lambda base: base.stop_lsn)
        return DrillModeChoice(
            RestoreTestMode.LOGICAL,
            (
                f"{fallback}: no base backup set is consistent before daily set {daily_set.backup_set_id}'s snapshot "
                f"at LSN {format_lsn(target)} (the oldest, {oldest.backup_set_id}, is consistent from {format_lsn(oldest.stop_lsn)})"
            ),
        )
    return DrillModeChoice(requested)
