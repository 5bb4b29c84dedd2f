"""`make check-policy` on base_backup.incremental: the same rule the backup run applies, as a finding."""

from __future__ import annotations

from dataclasses import replace

from test_incremental_plan import SOURCE

from hms_dr.physical.incremental import SUMMARIZE_WAL_HINT
from hms_dr.policy_check import Verdict, incremental_finding


def test_on_against_an_18_server_with_summaries_is_ok() -> None:
    finding = incremental_finding(SOURCE, where="db:5432", incremental=True)
    assert finding.verdict is Verdict.OK and "on: db:5432 runs PostgreSQL 18.1 with summarize_wal on" in finding.line()


def test_on_against_15_or_without_summaries_is_a_problem_with_the_fix() -> None:
    old = replace(SOURCE, server_version_num=150018, server_version="15.18", summarize_wal=None)
    finding = incremental_finding(old, where="db:5432", incremental=True)
    assert finding.verdict is Verdict.PROBLEM and "runs PostgreSQL 15.18" in finding.text
    assert "base_backup.incremental: false" in (finding.fix or "")
    finding = incremental_finding(replace(SOURCE, summarize_wal="off"), where="db:5432", incremental=True)
    assert finding.verdict is Verdict.PROBLEM and SUMMARIZE_WAL_HINT in (finding.fix or "")


def test_off_is_ok_and_says_whether_the_server_could() -> None:
    old = replace(SOURCE, server_version_num=150018, server_version="15.18", summarize_wal=None)
    assert incremental_finding(old, where="db", incremental=False).line() == (
        "OK      base_backup.incremental: off: every base backup is a full one"
    )
    assert "this server could take them" in incremental_finding(SOURCE, where="db", incremental=False).text
