"""Backup freshness watch: the newest complete backup of each kind is as recent as the policy allows.

Protects against the failure no run reports: a paused DAG, a broken schedule, a scheduler that is
down. Every 15 minutes (policy: `alerts.freshness.schedule`) it reads the primary store's catalog
(and the offsite store's) for the newest complete set of each kind — daily logical dump, weekly
base backup, archived WAL, offsite copy, passed restore test — and fails with one line per kind
that is older than `alerts.freshness.max_age` allows, or has no set at all (unknown is not fresh);
the offsite copies are judged as `hms_offsite_sync` judges them, against `offsite.max_age_days`.

Pages: the on-call DBA, through the alert channels of the policy, when a kind is stale or unknown.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import alert_on_failure, dag_deadlines
from hms_dr.tasks.freshness import check_backup_freshness

policy = load_policy()

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=policy.alerts.freshness_schedule,  # alerts.freshness.schedule
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "monitoring"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args={
        # A store that does not answer is retried once; a stale kind fails at once (no retry
        # makes a backup younger), and the next scheduled run checks again.
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=10),
        **alert_on_failure(policy),
    },
):
    check_backup_freshness()
