"""Task callable of hms_backup_freshness: fail, one line per kind, when a newest set is too old."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import task

from hms_dr.errors import BackupsStale
from hms_dr.freshness import check_offsite_copies, judge_freshness, read_newest_sets
from hms_dr.policy import load_policy
from hms_dr.tasks.connections import open_policy_store
from hms_dr.tasks.failures import engine_errors_decide_retry

log = logging.getLogger(__name__)


@task
@engine_errors_decide_retry
def check_backup_freshness() -> dict[str, Any]:
    """Read the newest complete set of each watched kind and fail when one is older than allowed."""
    policy = load_policy()
    max_age = policy.alerts.max_age
    primary = open_policy_store(policy)
    now = datetime.now(UTC)
    newest = read_newest_sets(primary, policy.cluster.name, max_age)
    # The offsite copies: hms_offsite_sync's judgement against offsite.max_age_days, made here too.
    offsite = None
    if policy.alerts.watch_offsite:
        offsite = check_offsite_copies(
            primary, open_policy_store(policy, offsite=True), policy.cluster.name, policy.offsite, now
        )
    report = judge_freshness(newest, max_age, now=now, offsite=offsite)
    for line in report.lines:
        (log.error if line in report.problems else log.info)("freshness %s", line)
    if report.problems:
        raise BackupsStale(
            list(report.problems),
            hint="when no run failed, the DAG named is paused, its schedule is broken, or the scheduler is down",
        )
    return report.to_xcom()
