"""The offsite sync's pure decisions: what to copy, repair and re-verify from two listings, the
re-verification rotation, the freshness verdict, and the policy's offsite section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from hms_dr.catalog import SetFolder
from hms_dr.errors import PolicyInvalid
from hms_dr.manifest import MANIFEST_NAME, BackupKind, new_backup_set_id
from hms_dr.offsite.freshness import KindNewest, NewestOffsite, NewestPrimary, judge_offsite_freshness
from hms_dr.offsite.plan import due_for_reverify, plan_kind_copies
from hms_dr.policy import DEFAULT_POLICY_PATH, parse_policy
from hms_dr.store import StoredObject

NOW = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)


def folder(set_id: str, sizes: dict[str, int], age: timedelta = timedelta(days=1)) -> SetFolder:
    at = NOW - age
    return SetFolder(
        set_id, {name: StoredObject(f"c/logical/{set_id}/{name}", size, at) for name, size in sizes.items()}
    )


COMPLETE = {"dump.gpg": 100, MANIFEST_NAME: 10}


def plan(primary: list[SetFolder], offsite: list[SetFolder], weeks: int = 52) -> Any:
    return plan_kind_copies(
        BackupKind.LOGICAL,
        {f.backup_set_id: f for f in primary},
        {f.backup_set_id: f for f in offsite},
        window=timedelta(days=90),
        now=NOW,
        reverify_weeks=weeks,
    )


def test_complete_sets_the_offsite_store_lacks_are_copied_leftovers_included() -> None:
    result = plan(
        [folder("a", COMPLETE), folder("b", COMPLETE), folder("c", COMPLETE), folder("orphan", {"dump.gpg": 100})],
        [folder("a", COMPLETE), folder("b", {"dump.gpg": 100})],
    )
    assert result.to_copy == ("b", "c")  # b: payload there, manifest not: resumed; the orphan is no set
    assert result.in_sync == 1 and result.to_repair == {}


def test_a_copy_with_a_missing_or_resized_object_is_repaired() -> None:
    result = plan(
        [folder("a", COMPLETE), folder("b", {**COMPLETE, "toc.gpg": 5})],
        [folder("a", {**COMPLETE, "dump.gpg": 99}), folder("b", COMPLETE)],
    )
    assert result.to_repair == {"a": ("dump.gpg",), "b": ("toc.gpg",)}


def test_old_sets_stay_behind_but_never_the_newest_of_the_kind() -> None:
    old, older = (new_backup_set_id(NOW - timedelta(days=d)) for d in (200, 300))
    result = plan([folder(old, COMPLETE), folder(older, COMPLETE)], [])
    assert result.to_copy == (old,) and result.too_old == (older,)
    wal = [
        folder("000000010000000000000007", COMPLETE, timedelta(days=100)),
        folder("000000010000000000000008", COMPLETE),
    ]
    result = plan_kind_copies(
        BackupKind.WAL, {f.backup_set_id: f for f in wal}, {}, window=timedelta(days=90), now=NOW, reverify_weeks=4
    )
    assert result.too_old == (
        "000000010000000000000007",
    )  # WAL is named after its segment: aged by its manifest's mtime


def test_re_verification_visits_every_set_exactly_once_in_n_consecutive_weeks() -> None:
    ids = [f"2026{n:04d}T020000Z" for n in range(500)]
    for weeks in (1, 4, 7):
        visits = {set_id: 0 for set_id in ids}
        for week in range(weeks):
            for set_id in ids:
                visits[set_id] += due_for_reverify(set_id, weeks, NOW + timedelta(weeks=week))
        assert set(visits.values()) == {1}


def test_sets_being_copied_or_repaired_are_not_re_verified_too() -> None:
    result = plan(
        [folder("a", COMPLETE), folder("b", COMPLETE)],
        [folder("a", {**COMPLETE, "dump.gpg": 1}), folder("z", COMPLETE)],
        weeks=1,
    )
    assert result.to_reverify == ("z",)


def kinds_report(offsite_age: timedelta | None, primary_age: timedelta | None) -> KindNewest:
    return KindNewest(
        primary_sets=3,
        newest_offsite=None if offsite_age is None else NewestOffsite("o", NOW - offsite_age),
        newest_primary=None if primary_age is None else NewestPrimary("p", NOW - primary_age),
    )


@pytest.mark.parametrize(
    ("kind", "offsite_age", "primary_age", "problem"),
    [
        ("logical", timedelta(days=7, hours=23), timedelta(hours=3), None),
        ("logical", timedelta(days=9), timedelta(hours=3), "the sync is falling behind"),
        ("base", timedelta(days=9), timedelta(days=9), "the backups themselves are late"),
        ("wal", None, timedelta(minutes=5), "no copy offsite"),
        ("restore-test", timedelta(days=30), timedelta(days=30), None),  # monthly: 35 days allowed
        ("data", None, None, None),  # nothing on either side: reported, not a failure
    ],
)
def test_freshness_fails_a_kind_whose_newest_offsite_copy_is_too_old(
    kind: str, offsite_age: timedelta | None, primary_age: timedelta | None, problem: str | None
) -> None:
    limits = {"restore-test": 35}
    verdict = judge_offsite_freshness(
        {kind: kinds_report(offsite_age, primary_age)}, lambda k: limits.get(k.value, 8), NOW
    )
    assert len(verdict.lines) == 1
    if problem is None:
        assert verdict.problems == ()
    else:
        assert len(verdict.problems) == 1 and problem in verdict.problems[0]


def policy_with(**offsite: Any) -> Any:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["offsite"] = offsite
    return parse_policy(data)


def test_the_offsite_section_defaults_to_8_days_and_a_90_day_compliance_lock() -> None:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data.pop("offsite", None)
    settings = parse_policy(data).offsite
    assert settings is not None
    assert (settings.max_age_days, settings.object_lock_mode, settings.object_lock_days) == (8, "COMPLIANCE", 90)
    assert settings.max_age_days_for(BackupKind.RESTORE_TEST) == 35 and settings.max_age_days_for(BackupKind.WAL) == 8


@pytest.mark.parametrize(
    ("offsite", "message"),
    [
        ({"object_lock": {"mode": "LEGAL"}}, "offsite.object_lock.mode"),
        ({"object_lock": {"days": 120}}, "longer than retention.offsite_days"),
        ({"max_age_days_by_kind": {"nightly": 3}}, "not a kind"),
        ({"reverify_weeks": 0}, "offsite.reverify_weeks must be at least 1"),
    ],
)
def test_a_bad_offsite_value_names_its_key(offsite: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyInvalid, match=message):
        policy_with(**offsite)
