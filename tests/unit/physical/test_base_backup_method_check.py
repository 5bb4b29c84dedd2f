"""`make check-policy` on base_backup.method: how this cluster will be copied, and the staging it needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from test_incremental_plan import SOURCE

from hms_dr.physical.preflight import copy_method_for
from hms_dr.policy.base_backup import BaseBackupMethod, BaseBackupPolicy
from hms_dr.policy_check import Verdict, method_finding

STREAMED = BaseBackupPolicy(staging_dir=Path("/srv/staging"), staging_limit_mb=256)


def test_a_streamed_cluster_needs_the_bound_and_max_wal_size_in_staging() -> None:
    source = replace(SOURCE, max_wal_size_bytes=1 << 30, cluster_size_bytes=500 << 30)
    finding = method_finding(source, STREAMED)
    assert finding.verdict is Verdict.OK
    assert finding.text.startswith("streamed: the cluster (500.0 GiB) flows into the store; staging needs 1.2 GiB free")


def test_a_cluster_with_its_own_tablespaces_is_staged_and_the_finding_says_why() -> None:
    source = replace(SOURCE, extra_tablespaces=2, cluster_size_bytes=10 << 30)
    assert copy_method_for(BaseBackupMethod.STREAMED, source) is BaseBackupMethod.STAGED
    assert copy_method_for(BaseBackupMethod.STREAMED, replace(source, extra_tablespaces=0)) is BaseBackupMethod.STREAMED
    text = method_finding(source, STREAMED).text
    assert (
        "the cluster has 2 tablespace(s) of its own" in text and "staging needs 22.1 GiB free" in text
    )  # 2.2 x 10 GiB + the WAL of the run
    staged = method_finding(replace(source, extra_tablespaces=0), replace(STREAMED, method=BaseBackupMethod.STAGED))
    assert staged.text.startswith("staged: staging needs")
