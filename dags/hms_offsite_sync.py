"""Weekly offsite copy of every backup set (runbook: "Store backups offsite", 3-2-1 rule).

Protects: against losing the primary store (the site, the bucket, the account). Every complete
set of every kind — daily logical, schema-only and data-only exports, base backups, WAL and
restore-test reports — that the offsite store (`store.offsite_url`, its own Connection
`hms_offsite` and credentials) lacks is copied: payloads first, streamed, each re-read offsite
and proven by the sha256 in its manifest; the manifest last, so an interrupted run never leaves
an offsite manifest without its payloads, and a rerun copies only what is missing. Existing
copies are checked by size on every run and re-read by sha256 in rotation; a damaged copy is
copied again. When the offsite bucket has Object Lock, uploads carry the policy's retention
(COMPLIANCE, 90 days). Then offsite retention (90 days, never the newest set of a kind, never WAL
a kept base backup needs; locked objects are reported, not deleted) and the primary's
restore-test report retention run. An unreachable store is retried with backoff and then fails
before anything is deleted anywhere.

Pages: the on-call DBA, when a set cannot be copied or repaired, or when a kind's newest
offsite copy is older than the policy allows (default 8 days). A trigger with a param this DAG
does not have is refused by the first task without paging.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import dag_deadlines
from hms_dr.tasks.dagargs import task_defaults
from hms_dr.tasks.offsite_sync import (
    check_both_stores,
    check_offsite_freshness,
    copy_missing_sets,
    expire_offsite_sets,
    expire_restore_test_reports,
)

policy = load_policy()
settings = policy.offsite

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=policy.schedules["offsite_sync"],
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "backup", "offsite"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    default_args=task_defaults(policy, settings),
    params={
        "reverify_all": Param(
            False,
            type="boolean",
            title="Re-read every offsite copy",
            description=(
                "Prove every existing offsite set by sha256 on this run, not only this week's share "
                f"(1 in {settings.reverify_weeks}); for after an incident at the offsite provider. Reads every offsite byte."
            ),
        ),
    },
):
    report = copy_missing_sets()
    check_both_stores() >> report
    check_offsite_freshness(report)
    # Retention only after a pass that copied and proved every set; a stale kind still pages.
    report >> expire_offsite_sets() >> expire_restore_test_reports()
