"""The policy's dr.restore keys: optional, defaulted, and a bad value names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hms_dr.errors import PolicyInvalid
from hms_dr.policy import DrRestorePolicy, parse_policy

COMMITTED = yaml.safe_load((Path(__file__).resolve().parents[3] / "include" / "policy.yaml").read_text())


def with_restore(section: object) -> dict:
    data = copy.deepcopy(COMMITTED)
    data.setdefault("dr", {})["restore"] = section
    return data


def test_the_committed_policy_gives_the_defaults_or_its_own_values() -> None:
    settings = parse_policy(copy.deepcopy(COMMITTED)).dr_restore
    assert settings.admin_connection_id == "hms_admin" and settings.approval_timeout_hours >= 1
    data = copy.deepcopy(COMMITTED)
    data.get("dr", {}).pop("restore", None)
    assert parse_policy(data).dr_restore == DrRestorePolicy()


def test_values_are_read() -> None:
    settings = parse_policy(
        with_restore(
            {
                "admin_connection_id": "hms_owner",
                "approval_timeout_hours": 4,
                "swap_lock_timeout_s": 5,
                "restore_jobs": 4,
            }
        )
    ).dr_restore
    assert settings == DrRestorePolicy("hms_owner", 4, 5, 4)


def test_nobody_may_approve_a_swap_until_the_policy_names_the_approvers() -> None:
    defaults = DrRestorePolicy()
    assert (defaults.approvers, defaults.approver_roles, defaults.allow_self_approval) == ((), (), False)
    committed = parse_policy(copy.deepcopy(COMMITTED)).dr_restore
    assert committed.allow_self_approval is False
    settings = parse_policy(
        with_restore(
            {
                "approvers": ["dba.alice", "bob@hospital.example", "dba.alice", "7"],
                "approver_roles": ["Op", "admin"],
                "allow_self_approval": True,
            }
        )
    ).dr_restore
    assert settings.approvers == ("dba.alice", "bob@hospital.example", "7")
    assert settings.approver_roles == ("op", "admin") and settings.allow_self_approval is True


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"approval_timeout_hours": 0}, r"dr.restore.approval_timeout_hours must be at least 1"),
        ({"swap_lock_timeout_s": "30s"}, r"dr.restore.swap_lock_timeout_s must be a whole number"),
        ({"admin_connection_id": "hms admin; drop"}, r"dr.restore.admin_connection_id is not an Airflow connection id"),
        ({"restore_jobs": 99}, r"dr.restore.restore_jobs must be at most 16"),
        (["hms_admin"], r"dr.restore must be a mapping"),
        ({"approvers": "alice"}, r"dr.restore.approvers must be a list, each an Airflow user id"),
        (
            {"approvers": ["alice", "bob:admin"]},
            r"dr.restore.approvers holds 'bob:admin': each must be an Airflow user id",
        ),
        ({"approvers": ["alice\n"]}, r"dr.restore.approvers holds 'alice\\n'"),
        ({"approvers": [7]}, r"dr.restore.approvers holds 7:"),
        (
            {"approver_roles": ["viewer"]},
            r"dr.restore.approver_roles holds 'viewer': each must be a simple auth manager role "
            r"that may answer a form \(user, op, admin\)",
        ),
        ({"allow_self_approval": "yes"}, r"dr.restore.allow_self_approval must be true or false"),
    ],
)
def test_a_bad_value_names_its_key(section: object, message: str) -> None:
    with pytest.raises(PolicyInvalid, match=message):
        parse_policy(with_restore(section))
