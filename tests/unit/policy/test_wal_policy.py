"""The wal: section of the policy: spool, spool removal, queue and retries, each key checked."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DEFAULT_POLICY_PATH, load_policy, parse_policy


def test_committed_policy_removes_shipped_files_and_retries_within_the_five_minute_cycle() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.wal.spool_dir == Path(yaml.safe_load(DEFAULT_POLICY_PATH.read_text())["wal"]["spool_dir"])
    assert policy.wal.remove_shipped_from_spool is True
    assert policy.schedules["wal_archive"] == "*/5 * * * *"
    assert policy.wal.execution_timeout_min < 5


def test_keys_added_after_spool_dir_are_optional() -> None:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["wal"] = {"spool_dir": "/spool"}
    wal = parse_policy(data).wal
    assert wal is not None and wal.remove_shipped_from_spool is True and wal.spool_queue == "default"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("remove_shipped_from_spool", "yes", "wal.remove_shipped_from_spool must be true or false"),
        ("retries", -1, "wal.retries must be at least 0"),
        ("execution_timeout_min", 0, "wal.execution_timeout_min must be at least 1"),
    ],
)
def test_a_bad_wal_value_names_its_key(key: str, value: object, message: str) -> None:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()))
    data["wal"][key] = value
    with pytest.raises(PolicyInvalid, match=message):
        parse_policy(data)
