"""Choosing an incremental base backup for a point-in-time recovery: the newest candidate whose
chain is whole, the chain carried whole (full first), replay from the tip, and a broken chain
either skipped with a warning or refused in one line naming the link at fault."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hms_dr.catalog import BackupSet
from hms_dr.errors import BackupChainBroken, NoBackupForTarget
from hms_dr.manifest import BackupKind, Payload, build_manifest, parse_manifest
from hms_dr.physical.chain import chain_fields_for_child, full_backup_fields
from hms_dr.physical.recoveryplan import WARNING_PREFIX, ArchivedWal, RecoveryPlan, plan_recovery
from hms_dr.physical.targets import parse_recovery_target
from hms_dr.wal.names import segment_file_name

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
SEG = 16 << 20
SYSTEM = "7312"


def base_set(
    days: int,
    *,
    stop_segno: int,
    parent: BackupSet | None = None,
    system_identifier: str = SYSTEM,
    tablespace: bool = False,
) -> BackupSet:
    """A base backup taken ``days`` after T0, consistent in segment ``stop_segno``: a full one,
    or an incremental of ``parent``."""
    started = T0 + timedelta(days=days)
    stopped = started + timedelta(minutes=10)
    set_id = started.strftime("%Y%m%dT%H%M%SZ")
    payloads = [Payload("base.tar.zst.gpg", 10, "a" * 64, "pg_basebackup-base-tar")]
    if tablespace:
        payloads.append(Payload("16390.tar.zst.gpg", 10, "b" * 64, "pg_basebackup-tablespace-tar"))
    body: dict[str, Any] = {
        "start_lsn": f"0/{(stop_segno - 1) * SEG + 0x28:X}",
        "stop_lsn": f"0/{stop_segno * SEG + 0x100:X}",
        "timeline": 1,
        "start_wal_file": segment_file_name(1, stop_segno - 1),
        "stop_wal_file": segment_file_name(1, stop_segno),
        "start_time": started.isoformat(),
        "stop_time": stopped.isoformat(),
        "wal_segment_size": SEG,
        "system_identifier": system_identifier,
        **(full_backup_fields() if parent is None else chain_fields_for_child(parent)),
    }
    document = build_manifest(
        kind=BackupKind.BASE,
        backup_set_id=set_id,
        cluster="hms-primary",
        started_at=started,
        finished_at=stopped + timedelta(minutes=1),
        payloads=payloads,
        extra={"base_backup": body},
    )
    manifest = parse_manifest(json.dumps(document).encode(), where="test")
    return BackupSet(manifest, f"hms-primary/base/{set_id}/manifest.json")


FULL = base_set(0, stop_segno=0x10)
INC1 = base_set(1, stop_segno=0x20, parent=FULL)
INC2 = base_set(2, stop_segno=0x30, parent=INC1)
CATALOG = [FULL, INC1, INC2]
ARCHIVED = ArchivedWal(segment_file_name(1, 0x40), T0 + timedelta(days=3), 0x41 * SEG)
AFTER_INC2 = "2026-11-03T12:00:00Z"


def plan(kind: str, value: str | None = None, *, catalog: list[BackupSet] = CATALOG, **kwargs: Any) -> RecoveryPlan:
    return plan_recovery(catalog, ARCHIVED, parse_recovery_target(kind, value), **kwargs)


def ids(*sets: BackupSet) -> tuple[str, ...]:
    return tuple(s.backup_set_id for s in sets)


@pytest.mark.parametrize(
    ("kind", "value", "chain"),
    [
        ("time", AFTER_INC2, (FULL, INC1, INC2)),
        ("time", "2026-11-02T12:00:00Z", (FULL, INC1)),  # inc2 had not finished yet
        ("time", "2026-11-01T12:00:00Z", (FULL,)),
        ("lsn", f"0/{0x20 * SEG + 0x100:X}", (FULL, INC1)),  # exactly inc1's stop
        ("latest", None, (FULL, INC1, INC2)),
        ("xid", "726", (FULL, INC1, INC2)),
    ],
)
def test_the_newest_tip_before_the_target_brings_its_whole_chain_full_first(
    kind: str, value: str | None, chain: tuple[BackupSet, ...]
) -> None:
    chosen = plan(kind, value)
    assert chosen.chain_ids == ids(*chain)
    assert chosen.base.backup_set_id == chain[-1].backup_set_id
    assert chosen.skipped == ()
    if len(chain) > 1:
        assert ", ".join(ids(*chain)) in chosen.reason


def test_replay_starts_at_the_tips_wal_not_the_full_backups() -> None:
    chosen = plan("time", AFTER_INC2)
    assert chosen.base.start_wal_file == segment_file_name(1, 0x2F)
    assert chosen.base.carried_segments() == (segment_file_name(1, 0x2F), segment_file_name(1, 0x30))


def test_a_full_backup_plans_exactly_as_before() -> None:
    chosen = plan("latest", catalog=[FULL])
    assert chosen.chain_ids == ids(FULL) and not chosen.is_incremental
    assert chosen.reason == "the newest base backup serves a latest target"


def test_a_named_incremental_means_its_chain() -> None:
    assert plan("latest", backup_set_id=INC1.backup_set_id).chain_ids == ids(FULL, INC1)


def test_a_named_incremental_whose_chain_is_broken_is_refused_not_replaced() -> None:
    with pytest.raises(BackupChainBroken) as refused:
        plan("latest", catalog=[FULL, INC2], backup_set_id=INC2.backup_set_id)
    assert INC1.backup_set_id in refused.value.message and refused.value.missing_backup_set_id == INC1.backup_set_id


def test_a_broken_newest_chain_falls_back_to_an_older_whole_one_with_a_warning() -> None:
    chosen = plan("time", AFTER_INC2, catalog=[FULL, INC2])  # inc1's manifest is gone
    assert chosen.chain_ids == ids(FULL)
    assert len(chosen.warnings) == 1
    warning = chosen.warnings[0]
    assert warning.startswith(WARNING_PREFIX)
    assert INC2.backup_set_id in warning and INC1.backup_set_id in warning and "not in the store" in warning


def test_every_broken_chain_newer_than_the_chosen_one_is_listed() -> None:
    inc3 = base_set(3, stop_segno=0x38, parent=INC2)
    chosen = plan("latest", catalog=[FULL, INC2, inc3])
    assert chosen.chain_ids == ids(FULL)
    assert inc3.backup_set_id in chosen.warnings[0]
    assert any(
        line.startswith(f"base backup set {INC1.backup_set_id}") and INC2.backup_set_id in line
        for line in chosen.skipped
    )


def test_when_every_candidate_is_broken_the_newest_ones_link_is_named_in_one_line() -> None:
    with pytest.raises(BackupChainBroken) as refused:
        plan("time", AFTER_INC2, catalog=[INC1, INC2])  # the full backup is gone
    assert isinstance(refused.value, NoBackupForTarget)
    assert refused.value.tip_backup_set_id == INC2.backup_set_id
    assert refused.value.missing_backup_set_id == FULL.backup_set_id
    assert "\n" not in refused.value.message and refused.value.hint


def test_a_link_of_another_cluster_breaks_the_chain() -> None:
    foreign = base_set(1, stop_segno=0x20, parent=FULL, system_identifier="9999")
    inc2 = base_set(2, stop_segno=0x30, parent=foreign)
    with pytest.raises(BackupChainBroken, match="different clusters"):
        plan("latest", catalog=[FULL, foreign, inc2], backup_set_id=inc2.backup_set_id)
    chosen = plan("latest", catalog=[FULL, foreign, inc2])
    assert chosen.chain_ids == ids(FULL)
    assert "different clusters" in chosen.warnings[0]


def test_a_link_recovery_cannot_restore_breaks_the_chain_naming_it() -> None:
    full = base_set(0, stop_segno=0x10, tablespace=True)
    inc1 = base_set(1, stop_segno=0x20, parent=full)
    with pytest.raises(BackupChainBroken) as refused:
        plan("latest", catalog=[full, inc1])
    assert f"base backup set {full.backup_set_id}, a link of the chain" in refused.value.message
    assert "tablespaces" in refused.value.message
