"""A restore test in mode both or physical runs logical only, and says why, while no base backup
can reach the daily set (a new install); otherwise it runs what was asked."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from test_recovery_plan import SEG, T0, base_set

from hms_dr.catalog import BackupSet
from hms_dr.manifest import BackupKind, Payload, build_manifest, parse_manifest
from hms_dr.physical.drill_mode import choose_drill_mode
from hms_dr.policy import RestoreTestMode

LOGICAL, PHYSICAL, BOTH = RestoreTestMode.LOGICAL, RestoreTestMode.PHYSICAL, RestoreTestMode.BOTH


def daily_set(snapshot_segno: int | None) -> BackupSet:
    started = T0 + timedelta(days=10)
    extra = {"snapshot": {"wal_lsn": f"0/{snapshot_segno * SEG + 0x500:X}"}} if snapshot_segno is not None else {}
    document = build_manifest(
        kind=BackupKind.LOGICAL,
        backup_set_id="20261111T020000Z",
        cluster="hms-primary",
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        payloads=[Payload("dump.gpg", 10, "c" * 64, "pg_dump-custom")],
        extra=extra,
    )
    return BackupSet(
        parse_manifest(json.dumps(document).encode(), where="test"),
        "hms-primary/logical/20261111T020000Z/manifest.json",
    )


BEFORE, AFTER, BROKEN = (
    base_set(0, stop_segno=0x10),
    base_set(14, stop_segno=0x80),
    base_set(1, stop_segno=0x11, broken=True),
)


@pytest.mark.parametrize(
    ("requested", "base_sets", "mode", "reason_words"),
    [
        (BOTH, [], LOGICAL, ["mode both runs logical only", "no base backup set yet"]),
        (PHYSICAL, [], LOGICAL, ["mode physical runs logical only", "no base backup set yet"]),
        (BOTH, [BROKEN], LOGICAL, ["no base backup set yet"]),
        (
            BOTH,
            [AFTER],
            LOGICAL,
            [
                "no base backup set is consistent before daily set 20261111T020000Z's snapshot at LSN 0/40000500",
                f"the oldest, {AFTER.backup_set_id}, is consistent from 0/80000100",
            ],
        ),
        (BOTH, [BEFORE, AFTER], BOTH, []),
        (PHYSICAL, [BEFORE], PHYSICAL, []),
        (LOGICAL, [], LOGICAL, []),
    ],
)
def test_the_mode_falls_back_to_logical_only_while_no_base_backup_reaches_the_set(
    requested: RestoreTestMode, base_sets: list[BackupSet], mode: RestoreTestMode, reason_words: list[str]
) -> None:
    choice = choose_drill_mode(requested, daily_set(0x40), base_sets)
    assert choice.mode is mode
    assert (choice.fallback_reason is None) == (not reason_words)
    for word in reason_words:
        assert word in (choice.fallback_reason or "")


def test_a_set_without_a_snapshot_lsn_keeps_its_mode_for_the_drill_to_refuse_by_name() -> None:
    assert choose_drill_mode(BOTH, daily_set(None), []).mode is BOTH
