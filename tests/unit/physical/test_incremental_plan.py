"""Full or incremental: the decision of each base backup run (a pure function of the catalog and
the server), the preflight refusals of a server that cannot take an incremental, the argv of an
incremental pg_basebackup and how a server's refusal of one reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.catalog import BackupSet
from hms_dr.errors import PreflightFailed, RequestRefused, ToolFailed
from hms_dr.manifest import BackupKind, Manifest, Payload, new_backup_set_id
from hms_dr.pginstalls import PgInstall
from hms_dr.physical.chain import BackupType, chain_fields_for_child, full_backup_fields
from hms_dr.physical.incremental import (
    FULL_DUE_SLACK,
    PG_MANIFEST_FORMAT,
    SUMMARIZE_WAL_HINT,
    BackupTypeRequest,
    check_incremental_source,
    plan_base_backup,
    wants_incremental,
)
from hms_dr.physical.pgbasebackup import explain_pg_basebackup_failure, needs_full_backup, pg_basebackup_argv
from hms_dr.physical.preflight import SourceCluster

MIB = 1 << 20
SYSTEM = "7400000000000000001"
DAY1 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SOURCE = SourceCluster(
    server_version_num=180001,
    server_version="18.1",
    in_recovery=False,
    system_identifier=SYSTEM,
    data_checksums=True,
    wal_segment_size_bytes=16 * MIB,
    wal_level="replica",
    max_wal_senders=10,
    role_name="hms_replica",
    can_replicate=True,
    is_superuser=False,
    cluster_size_bytes=1200 * MIB,
    databases_not_measured=0,
    summarize_wal="on",
    timeline=1,
)
PG_MANIFEST = Payload("backup_manifest.zst.gpg", 100, "ab" * 32, PG_MANIFEST_FORMAT, 400, "cd" * 32)


def a_base(started_at: datetime, chain_fields: dict[str, Any] | None = None, **section: Any) -> BackupSet:
    set_id = new_backup_set_id(started_at)
    body = {
        "base_backup": {
            "system_identifier": SYSTEM,
            "timeline": 1,
            "stop_timeline": 1,
            "server_version": "18.1",
            **(chain_fields if chain_fields is not None else full_backup_fields()),
            **section,
        }
    }
    manifest = Manifest(
        BackupKind.BASE, set_id, "hms-primary", started_at, started_at + timedelta(minutes=10), (PG_MANIFEST,), body
    )
    return BackupSet(manifest=manifest, manifest_key=f"hms-primary/base/{set_id}/manifest.json")


def a_child(parent: BackupSet, after: timedelta = timedelta(days=1)) -> BackupSet:
    return a_base(parent.manifest.started_at + after, chain_fields_for_child(parent))


def plan(
    sets: list[BackupSet],
    *,
    now: datetime,
    request: BackupTypeRequest = BackupTypeRequest.AUTO,
    enabled: bool = True,
    source: SourceCluster = SOURCE,
    unreadable: tuple[str, ...] = (),
    full_every_days: int = 7,
) -> Any:
    return plan_base_backup(
        request,
        incremental_enabled=enabled,
        full_every_days=full_every_days,
        sets=sets,
        unreadable_ids=unreadable,
        source=source,
        now=now,
    )


# -- the decision ------------------------------------------------------------------------------


def test_the_first_run_takes_a_full_backup_and_says_why() -> None:
    decided = plan([], now=DAY1)
    assert decided.backup_type is BackupType.FULL and decided.parent is None
    assert decided.reasons == ("no base backup set in the store yet",)


def test_with_a_recent_full_the_next_run_is_an_incremental_against_it_then_against_that_incremental() -> None:
    full = a_base(DAY1)
    decided = plan([full], now=DAY1 + timedelta(days=1))
    assert decided.is_incremental and decided.parent == full and decided.chain.ids == (full.backup_set_id,)
    assert len(decided.reasons) == 1 and f"against base set {full.backup_set_id}" in decided.reasons[0]
    first = a_child(full)
    decided = plan([first, full], now=DAY1 + timedelta(days=2))  # any order
    assert decided.parent == first and decided.chain.ids == (full.backup_set_id, first.backup_set_id)
    assert "chain of 2" in decided.reasons[0]


def test_a_full_is_due_after_full_every_days_even_if_the_daily_run_starts_a_little_early() -> None:
    sets = [a_base(DAY1)]
    for _ in range(5):
        sets.append(a_child(sets[-1]))
    assert plan(sets, now=DAY1 + timedelta(days=6)).is_incremental
    # Day 7 at 03:00 minus a few seconds of scheduling jitter: due, not an eighth day of incrementals.
    decided = plan(sets, now=DAY1 + timedelta(days=7) - timedelta(seconds=30))
    assert decided.backup_type is BackupType.FULL
    assert decided.reasons == (
        f"a full backup is due: the chain's full set {sets[0].backup_set_id} is 7.0 days old (base_backup.full_every_days: 7)",
    )
    assert plan(sets, now=DAY1 + timedelta(days=7) - FULL_DUE_SLACK - timedelta(seconds=1)).is_incremental
    assert plan(sets, now=DAY1 + timedelta(days=3), full_every_days=2).backup_type is BackupType.FULL


def test_the_policy_off_or_a_forced_full_takes_a_full_whatever_the_catalog() -> None:
    full = a_base(DAY1)
    now = DAY1 + timedelta(days=1)
    assert plan([full], now=now, enabled=False).reasons == ("base_backup.incremental is off in the policy",)
    forced = plan([full], now=now, request=BackupTypeRequest.FULL)
    assert forced.backup_type is BackupType.FULL and forced.reasons == ("backup_type full was asked for this run",)
    # A forced incremental needs no policy switch, and ignores full_every_days (the DBA asked for it).
    assert plan(
        [full], now=DAY1 + timedelta(days=30), enabled=False, request=BackupTypeRequest.INCREMENTAL
    ).is_incremental


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"system_identifier": "7499999999999999999"}, "is of system 7499999999999999999, the server is system"),
        ({"stop_timeline": 2}, "ends on timeline 2, the server writes timeline 1 (a failover since)"),
        ({"server_version": "17.6"}, "is of PostgreSQL 17.6, the server runs 18.1"),
    ],
)
def test_a_tip_of_another_cluster_timeline_or_major_is_not_extended(change: dict[str, Any], words: str) -> None:
    full = a_base(DAY1, **change)
    decided = plan([full], now=DAY1 + timedelta(days=1))
    assert decided.backup_type is BackupType.FULL
    assert len(decided.reasons) == 1 and words in decided.reasons[0]
    with pytest.raises(RequestRefused) as refused:
        plan([full], now=DAY1 + timedelta(days=1), request=BackupTypeRequest.INCREMENTAL)
    assert words in refused.value.message and "\n" not in refused.value.message
    assert refused.value.message.startswith("backup_type incremental refused: ")
    assert refused.value.message.endswith("; nothing was copied")


def test_a_broken_chain_an_unreadable_tip_or_a_tip_without_backup_manifest_takes_a_full() -> None:
    full = a_base(DAY1)
    first = a_child(full)
    second = a_child(first)
    broken = plan([full, second], now=DAY1 + timedelta(days=3))  # first is gone
    assert broken.backup_type is BackupType.FULL
    assert (
        f"the newest base set {second.backup_set_id} cannot be extended: base backup set {first.backup_set_id}"
        in (broken.reasons[0])
    )
    newer = new_backup_set_id(DAY1 + timedelta(days=2))
    unreadable = plan([full, first], now=DAY1 + timedelta(days=3), unreadable=(newer,))
    assert unreadable.reasons == (f"the newest base set {newer} has an unreadable manifest",)
    older = new_backup_set_id(DAY1 - timedelta(days=1))
    assert plan([full, first], now=DAY1 + timedelta(days=3), unreadable=(older,)).parent == first
    assert plan([], now=DAY1, unreadable=(older,)).backup_type is BackupType.FULL
    bare = replace(full, manifest=replace(full.manifest, payloads=()))
    assert plan([bare], now=DAY1 + timedelta(days=1)).reasons == (
        f"the newest base set {full.backup_set_id} has no PostgreSQL backup_manifest payload",
    )


def test_a_forced_incremental_without_any_set_is_refused_in_one_line() -> None:
    with pytest.raises(RequestRefused) as refused:
        plan([], now=DAY1, request=BackupTypeRequest.INCREMENTAL)
    assert refused.value.message == (
        "backup_type incremental refused: no base backup set in the store yet; nothing was copied"
    )
    assert "backup_type full" in (refused.value.hint or "")


def test_several_reasons_are_each_given() -> None:
    full = a_base(DAY1, server_version="17.2", stop_timeline=3)
    decided = plan([full], now=DAY1 + timedelta(days=8))
    assert len(decided.reasons) == 3 and all("\n" not in r for r in decided.reasons)


# -- what the server must offer ------------------------------------------------------------------


def test_only_auto_with_the_policy_on_or_a_forced_incremental_asks_the_server_for_one() -> None:
    assert wants_incremental(BackupTypeRequest.AUTO, incremental_enabled=True)
    assert wants_incremental(BackupTypeRequest.INCREMENTAL, incremental_enabled=False)
    assert not wants_incremental(BackupTypeRequest.AUTO, incremental_enabled=False)
    assert not wants_incremental(BackupTypeRequest.FULL, incremental_enabled=True)


def test_a_server_older_than_17_is_refused_naming_its_version_and_both_fixes() -> None:
    old = replace(SOURCE, server_version_num=150018, server_version="15.18", summarize_wal=None)
    with pytest.raises(PreflightFailed) as refused:
        check_incremental_source(old, where="db:5432", asked_by="the policy (base_backup.incremental: true)")
    assert "db:5432 runs PostgreSQL 15.18" in refused.value.message and "\n" not in refused.value.message
    assert "base_backup.incremental: false" in (refused.value.hint or "") and "upgrade" in (refused.value.hint or "")


def test_summarize_wal_off_is_refused_with_the_command_that_turns_it_on() -> None:
    with pytest.raises(PreflightFailed) as refused:
        check_incremental_source(
            replace(SOURCE, summarize_wal="off"), where="db:5432", asked_by="backup_type incremental"
        )
    assert "summarize_wal = off" in refused.value.message and "\n" not in refused.value.message
    assert SUMMARIZE_WAL_HINT in (refused.value.hint or "")
    check_incremental_source(SOURCE, where="db:5432", asked_by="backup_type incremental")  # 18, on: passes


# -- pg_basebackup --------------------------------------------------------------------------------


def test_an_incremental_pg_basebackup_names_the_parent_manifest_and_a_full_one_does_not(pg18: PgInstall) -> None:
    full = pg_basebackup_argv(pg18, Path("/s/tars"), label="hms-dr-x")
    assert not any(a.startswith("--incremental") for a in full)
    incremental = pg_basebackup_argv(
        pg18, Path("/s/tars"), label="hms-dr-x", incremental_manifest=Path("/s/w/parent.backup_manifest")
    )
    assert incremental == [*full, "--incremental=/s/w/parent.backup_manifest"]


@pytest.mark.parametrize(
    "line",
    [
        "error: could not initiate base backup: ERROR:  WAL summaries are required on timeline 1 from 0/2000028 to "
        "0/5000060, but no summaries for that timeline and LSN range exist",
        "error: could not initiate base backup: ERROR:  incremental backups cannot be taken unless WAL summarization "
        "is enabled",
        "error: could not upload manifest: ERROR:  manifest system identifier is 74000001, but database system "
        "identifier is 74000002",
    ],
)
def test_a_server_refusing_the_incremental_reads_as_a_full_backup_needed(line: str) -> None:
    failure = ToolFailed("pg_basebackup", 1, line)
    assert needs_full_backup(failure)
    explained = explain_pg_basebackup_failure(failure, "db:5432")
    assert "a full base backup is needed" in (explained.hint or "") and "\n" not in explained.message


def test_other_failures_do_not_ask_for_a_full_backup() -> None:
    assert not needs_full_backup(
        ToolFailed("pg_basebackup", 1, "error: connection to server failed: no pg_hba.conf entry")
    )
