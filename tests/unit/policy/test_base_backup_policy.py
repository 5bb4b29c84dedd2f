"""The policy's base_backup section: optional, defaulted, and every bad value names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DEFAULT_POLICY_PATH, parse_policy


def committed() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def with_section(section: object) -> dict:
    data = copy.deepcopy(committed())
    if section is None:
        data.pop("base_backup", None)
    else:
        data["base_backup"] = section
    return data


def test_the_committed_policy_stages_under_the_staging_dir_and_keeps_four() -> None:
    policy = parse_policy(committed())
    assert policy.base_backup is not None
    assert policy.base_backup.staging_dir == policy.staging.dir / "base-backup"
    assert (policy.base_backup.staging_space_ratio, policy.base_backup.zstd_level) == (2.2, 1)
    assert policy.retention.base_backups_keep == 4


@pytest.mark.parametrize("section", [None, {}, {"zstd_level": None}])
def test_a_policy_without_the_section_takes_the_defaults(section: object) -> None:
    policy = parse_policy(with_section(section))
    assert policy.base_backup is not None
    assert policy.base_backup.staging_dir == Path(committed()["staging"]["dir"]) / "base-backup"
    assert (policy.base_backup.staging_space_ratio, policy.base_backup.zstd_level, policy.base_backup.zstd_threads) == (
        2.2,
        1,
        0,
    )


def test_every_key_can_be_set() -> None:
    section = {"staging_dir": "/srv/hms-dr/base", "staging_space_ratio": 3, "zstd_level": 9, "zstd_threads": 4}
    base = parse_policy(with_section(section)).base_backup
    assert base is not None
    assert (base.staging_dir, base.staging_space_ratio, base.zstd_level, base.zstd_threads) == (
        Path("/srv/hms-dr/base"),
        3.0,
        9,
        4,
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"staging_dir": "relative/base"}, "base_backup.staging_dir must be an absolute path"),
        ({"staging_space_ratio": 1.5}, "base_backup.staging_space_ratio must be at least 2.0"),
        ({"zstd_level": 0}, "base_backup.zstd_level must be at least 1"),
        ({"zstd_level": 20}, "base_backup.zstd_level must be at most 19"),
        ({"zstd_threads": -1}, "base_backup.zstd_threads must be at least 0"),
        (["zstd_level", 3], "base_backup must be a mapping"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(section: object, message: str) -> None:
    with pytest.raises(PolicyInvalid, match=message):
        parse_policy(with_section(section), source="policy.yaml")


def test_incremental_backups_are_off_by_default_and_a_full_is_due_weekly() -> None:
    for data in (committed(), with_section(None)):
        settings = parse_policy(data).base_backup
        assert (settings.incremental, settings.full_every_days) == (False, 7)
    settings = parse_policy(with_section({"incremental": True, "full_every_days": 14})).base_backup
    assert (settings.incremental, settings.full_every_days) == (True, 14)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"incremental": "yes"}, "base_backup.incremental must be true or false, got 'yes'"),
        ({"full_every_days": 0}, "base_backup.full_every_days must be at least 1, got 0"),
        ({"full_every_days": 31}, "base_backup.full_every_days must be at most 30, got 31"),
    ],
)
def test_a_bad_incremental_setting_is_refused_naming_its_key(section: object, message: str) -> None:
    with pytest.raises(PolicyInvalid, match=message):
        parse_policy(with_section(section))


def test_the_incremental_schedule_is_daily_by_default_and_may_be_left_out() -> None:
    assert parse_policy(committed()).schedules["incremental_base_backup"] == "0 3 * * *"
    data = copy.deepcopy(committed())
    del data["schedules"]["incremental_base_backup"]  # a policy written before incrementals
    assert parse_policy(data).schedules["incremental_base_backup"] == "0 3 * * *"
    data["schedules"]["incremental_base_backup"] = "30 1 * * *"
    assert parse_policy(data).schedules["incremental_base_backup"] == "30 1 * * *"
    data["schedules"]["incremental_base_backup"] = "daily"
    with pytest.raises(PolicyInvalid, match=r"schedules\.incremental_base_backup must be a 5-field cron expression"):
        parse_policy(data)
    del data["schedules"]["weekly_base_backup"]  # the others stay required
    with pytest.raises(PolicyInvalid, match=r"schedules\.weekly_base_backup is missing"):
        parse_policy(data)


def test_the_streamed_method_with_a_256_mb_bound_is_the_default_and_both_can_be_set() -> None:
    from hms_dr.policy.base_backup import BaseBackupMethod

    default = parse_policy(with_section({})).base_backup
    assert default is not None and (default.method, default.staging_limit_mb) == (BaseBackupMethod.STREAMED, 256)
    chosen = parse_policy(with_section({"method": "staged", "staging_limit_mb": 64})).base_backup
    assert chosen is not None and (chosen.method, chosen.staging_limit_mb) == (BaseBackupMethod.STAGED, 64)


@pytest.mark.parametrize(
    "section, words",
    [
        ({"method": "piped"}, "base_backup.method must be one of streamed | staged, got 'piped'"),
        ({"staging_limit_mb": 0}, "base_backup.staging_limit_mb"),
    ],
)
def test_a_bad_method_or_bound_names_its_key(section: dict, words: str) -> None:
    with pytest.raises(PolicyInvalid, match=words):
        parse_policy(with_section(section))
