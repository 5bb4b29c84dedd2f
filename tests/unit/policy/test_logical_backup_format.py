"""logical_backup.format / directory_from_bytes / dump_jobs: optional, defaulted, validated in one
line naming the key; and the pure choice of the whole-database dump's format by database size."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DEFAULT_POLICY_PATH, DumpFormat, parse_policy
from hms_dr.policy.logical_backup import GIB

COMPOSE_POLICY = DEFAULT_POLICY_PATH.parents[1] / "deploy" / "policy.compose.yaml"


def with_keys(**keys: object) -> dict:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    for key, value in keys.items():
        if value is None:
            data["logical_backup"].pop(key, None)
        else:
            data["logical_backup"][key] = value
    return data


def test_the_committed_policies_pick_by_size_from_8_gib_with_two_jobs() -> None:
    for path in (DEFAULT_POLICY_PATH, COMPOSE_POLICY):
        logical = parse_policy(yaml.safe_load(path.read_text()), source=str(path)).logical_backup
        assert (logical.format, logical.directory_from_bytes, logical.dump_jobs) == (DumpFormat.AUTO, 8 * GIB, 2)


def test_a_policy_without_the_keys_takes_the_defaults() -> None:
    logical = parse_policy(with_keys(format=None, directory_from_bytes=None, dump_jobs=None)).logical_backup
    assert (logical.format, logical.directory_from_bytes, logical.dump_jobs) == (DumpFormat.AUTO, 8 * GIB, 2)


def test_every_key_can_be_set() -> None:
    logical = parse_policy(with_keys(format="directory", directory_from_bytes=0, dump_jobs=8)).logical_backup
    assert (logical.format, logical.directory_from_bytes, logical.dump_jobs) == (DumpFormat.DIRECTORY, 0, 8)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"format": "tar"}, "logical_backup.format must be one of auto | custom | directory, got 'tar'"),
        ({"format": 3}, "logical_backup.format must be a non-empty string, got 3"),
        ({"directory_from_bytes": -1}, "logical_backup.directory_from_bytes must be at least 0, got -1"),
        ({"directory_from_bytes": "8GiB"}, "logical_backup.directory_from_bytes must be a whole number, got '8GiB'"),
        ({"dump_jobs": 0}, "logical_backup.dump_jobs must be at least 1, got 0"),
        ({"dump_jobs": 17}, "logical_backup.dump_jobs must be at most 16, got 17"),
        ({"dump_jobs": True}, "logical_backup.dump_jobs must be a whole number, got True"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_its_key(keys: dict, message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(with_keys(**keys), source="test.yaml")
    assert caught.value.message == f"test.yaml: {message}"


@pytest.mark.parametrize(
    ("setting", "size", "chosen"),
    [
        (DumpFormat.AUTO, 8 * GIB - 1, DumpFormat.CUSTOM),
        (DumpFormat.AUTO, 8 * GIB, DumpFormat.DIRECTORY),  # at the threshold: directory
        (DumpFormat.AUTO, 500 * GIB, DumpFormat.DIRECTORY),
        (DumpFormat.CUSTOM, 500 * GIB, DumpFormat.CUSTOM),  # a forced format ignores the size
        (DumpFormat.DIRECTORY, 1, DumpFormat.DIRECTORY),
    ],
)
def test_the_format_is_chosen_by_database_size_unless_forced(
    setting: DumpFormat, size: int, chosen: DumpFormat
) -> None:
    logical = dataclasses.replace(parse_policy(with_keys()).logical_backup, format=setting)
    assert logical.dump_format_for(size) is chosen


def test_the_choice_is_described_with_its_reason() -> None:
    logical = parse_policy(with_keys()).logical_backup
    assert logical.describe_format_choice(12 * GIB) == (
        "directory (pg_dump -Fd -j 2, staged on the worker): the database's 12.00 GiB is at or above"
        " logical_backup.directory_from_bytes (8.00 GiB)"
    )
    assert logical.describe_format_choice(GIB // 2).startswith("custom (pg_dump -Fc): the database's 0.50 GiB is below")
    forced = dataclasses.replace(logical, format=DumpFormat.CUSTOM)
    assert forced.describe_format_choice(12 * GIB) == "custom (pg_dump -Fc), set by logical_backup.format"
