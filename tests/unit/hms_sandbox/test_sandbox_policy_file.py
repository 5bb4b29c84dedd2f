"""The sandbox's policy overrides: a sandbox on PostgreSQL 17+ takes incremental base backups."""

from __future__ import annotations

from pathlib import Path

import pytest

from hms_sandbox.policy_file import sandbox_policy_overrides


@pytest.mark.parametrize(("major", "incremental"), [(None, None), (15, None), (16, None), (17, True), (18, True)])
def test_incrementals_are_on_from_17(major: int | None, incremental: bool | None) -> None:
    overrides = sandbox_policy_overrides(
        fingerprint="F" * 40, staging_dir=Path("/s/staging"), spool_dir=Path("/s/spool"), pg_major=major
    )
    assert overrides.get("base_backup", {}).get("incremental") is incremental
