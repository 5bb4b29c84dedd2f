"""Alerts end to end, read back from the sandbox's SMTP sink (aiosmtpd writing .eml files):

1. a task that fails for good (after its retries) is e-mailed once, naming DAG, task, run, the
   one-line reason and a link to its log (through `airflow dags test`, which runs the callbacks);
2. the backup freshness watch fails and e-mails when the daily backup stopped producing sets
   although no run failed: the daily DAG of a cluster has been paused for two days (its newest
   set, in a catalog of its own, finished two days ago), over the committed 26 h;
3. a Deadline Alert, with a real scheduler and triggerer: a scheduled daily backup run is held
   up from outside (the test locks a table the dump must read) past a 30-second deadline, and the
   deadline e-mail arrives, not before the deadline, while the run is still running; then its
   stuck session is ended, the task fails for good and the scheduled run's failure e-mail arrives.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from hms_dr.catalog import key_for
from hms_dr.manifest import BackupKind, Payload, new_backup_set_id
from hms_dr.publish import publish_set
from hms_sandbox.cluster import free_port
from hms_sandbox.policy_file import SANDBOX_ALERT_RECIPIENT
from hms_sandbox.smtpsink import mail_dir

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAILY = "hms_daily_logical_backup"
FRESHNESS = "hms_backup_freshness"
ONLY_LOGICAL_WATCHED = {"base": None, "wal": None, "restore-test": None}  # and alerts.freshness.watch_offsite: false


class Mailbox:
    """The sink's messages that arrived after this mailbox was opened."""

    def __init__(self, sandbox: Any) -> None:
        self.dir = mail_dir(Path(sandbox.state_dir))
        self.seen = {p.name for p in self.dir.glob("*.eml")}

    def new(self, dag_id: str, kind: str) -> list[EmailMessage]:
        import email
        import email.policy

        found = []
        for path in sorted(self.dir.glob("*.eml")):
            if path.name in self.seen:
                continue
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if message["X-HMS-DR-DAG"] == dag_id and message["X-HMS-DR-Alert"] == kind:
                found.append(message)
        return found

    def wait(self, dag_id: str, kind: str, timeout_s: float, why: Callable[[], str] = lambda: "") -> EmailMessage:
        deadline = time.monotonic() + timeout_s
        while not (messages := self.new(dag_id, kind)):
            assert time.monotonic() < deadline, f"no {kind} e-mail for {dag_id} in {timeout_s} s\n{why()}"
            time.sleep(1)
        return messages[0]


def body(message: EmailMessage) -> str:
    content = message.get_body(preferencelist=("plain",))
    assert content is not None
    return str(content.get_content())


def test_a_task_failing_for_good_is_emailed_once_after_its_retries(dag_runner: Any, sandbox: Any) -> None:
    mailbox = Mailbox(sandbox)
    storage = json.loads(dag_runner.env["AIRFLOW_CONN_HMS_STORAGE"])
    storage["extra"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: StoreUnavailable, transient
    outcome = dag_runner.run(
        DAILY,
        policy={"logical_backup.retries": 1, "logical_backup.retry_delay_s": 0},
        env={"AIRFLOW_CONN_HMS_STORAGE": json.dumps(storage)},
        name="alert-on-failure",
    )
    assert outcome.task_states["check_preconditions"] == "failed" and outcome.task_tries["check_preconditions"] == 2

    messages = mailbox.new(DAILY, "failure")
    assert len(messages) == 1, "one e-mail for the final failure, none for the retry"
    message = messages[0]
    assert message["To"] == SANDBOX_ALERT_RECIPIENT
    assert message["Subject"].startswith(f"[hms-dr] FAILED {DAILY}.check_preconditions: StoreUnavailable: ")
    text = body(message)
    assert f"DAG:     {DAILY}" in text and "Task:    check_preconditions" in text
    assert f"Run:     {outcome.run_id}" in text and "Try:     2 of 2" in text
    assert "Reason:  StoreUnavailable: cannot reach S3" in text
    assert (
        "Log:     http://" in text
        and f"/dags/{DAILY}/runs/" in text
        and "/tasks/check_preconditions?try_number=2" in text
    )
    for secret in sandbox.secrets.values():
        assert secret not in message.as_string()


PAUSED_CLUSTER = "hms-paused-daily"


@pytest.fixture
def two_day_old_daily_set(primary_store: Any) -> Iterator[str]:
    """A cluster whose daily DAG has been paused for two days: its newest complete logical set
    finished 2 days ago (the clock moved, not the policy). A catalog of its own, so no other test
    sees the set, and it goes (manifest first) at the end."""
    finished_at = datetime.now(UTC) - timedelta(days=2)
    set_id = new_backup_set_id(finished_at)
    payload_key = key_for(PAUSED_CLUSTER, BackupKind.LOGICAL, set_id, "dump.pgdump.zst.gpg")
    stored = primary_store.put(payload_key, io.BytesIO(b"an encrypted dump"))
    manifest_key = publish_set(
        primary_store,
        kind=BackupKind.LOGICAL,
        cluster=PAUSED_CLUSTER,
        backup_set_id=set_id,
        started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at,
        payloads=[Payload("dump.pgdump.zst.gpg", stored.size_bytes, stored.sha256, "pg_dump-custom")],
        extra={},
    )
    try:
        yield set_id
    finally:
        primary_store.delete(manifest_key)
        primary_store.delete(payload_key)


def test_freshness_alert_fires_when_the_daily_backup_has_been_paused_for_two_days(
    dag_runner: Any, sandbox: Any, two_day_old_daily_set: str
) -> None:
    mailbox = Mailbox(sandbox)
    # The committed 26 h max age; only the logical kind watched, so the alert is about it alone.
    stale = dag_runner.run(
        FRESHNESS,
        name="stale",
        policy={
            "cluster.name": PAUSED_CLUSTER,
            "alerts.freshness.max_age": {"logical": "26h", **ONLY_LOGICAL_WATCHED},
            "alerts.freshness.watch_offsite": False,
        },
    )
    assert stale.state == "failed"
    assert stale.task_tries["check_backup_freshness"] == 1, "a stale backup is not retried: no retry makes it younger"
    messages = mailbox.new(FRESHNESS, "failure")
    assert len(messages) == 1
    assert messages[0]["Subject"].startswith(
        f"[hms-dr] FAILED {FRESHNESS}.check_backup_freshness: BackupsStale: logical "
    )
    text = body(messages[0])
    assert f"Run:     {stale.run_id}" in text and "Reason:  BackupsStale: logical (hms_daily_logical_backup): " in text
    assert (
        f"  - logical (hms_daily_logical_backup): newest complete set {two_day_old_daily_set} finished 2 d 0 h ago, older than the 26h allowed"
        in text
    )
    assert "HINT:    when no run failed, the DAG named is paused" in text
    assert "/tasks/check_backup_freshness?try_number=1" in text


def test_a_run_held_past_its_deadline_is_emailed_by_the_triggerer(sandbox: Any, scheduled_airflow: Any) -> None:
    from email.utils import parsedate_to_datetime

    mailbox = Mailbox(sandbox)
    shutil.rmtree(
        Path(sandbox.state_dir) / "airflow-scheduled-deadline", ignore_errors=True
    )  # runs of an earlier session
    # A scaled clock: a run every minute (the first one, for the current minute, at unpause) and a
    # 30-second deadline from its scheduled time instead of 2 h; no retry, so ending it fails it for good.
    airflow = scheduled_airflow(
        "deadline",
        {
            "schedules.daily_logical_backup": "* * * * *",
            "alerts.deadlines": {DAILY: "30s"},
            "logical_backup.retries": 0,
        },
    )
    with psycopg.connect(sandbox.superuser_dsn("hospital_management")) as holder:
        # Held by the test until the deadline e-mail is in: the run's first read of patients waits.
        holder.execute("LOCK TABLE public.patients IN ACCESS EXCLUSIVE MODE")
        airflow.unpause_when_parsed(DAILY)

        def diagnosis() -> str:
            return (
                f"runs: {airflow.run_states(DAILY)}\n{airflow.log_tail('triggerer')}\n{airflow.log_tail('scheduler')}"
            )

        late = mailbox.wait(DAILY, "deadline", timeout_s=180, why=diagnosis)
        run_id, logical_date = first_run(airflow.db_path, DAILY)
        assert late["Subject"] == f"[hms-dr] LATE {DAILY}: not done within 30s of its scheduled time"
        text = body(late)
        # Unpaused late in a minute, the run's deadline may pass before it even starts: then it is
        # reported queued, else running; either way unfinished, which is what the alert is for.
        assert re.search(
            rf"{DAILY}: run {re.escape(run_id)} is still (running|queued) 30s after its scheduled time\.", text
        ), text
        assert f"/dags/{DAILY}/runs/{quote(run_id, safe='')}" in text
        sent_at = parsedate_to_datetime(late["Date"])
        assert (sent_at - logical_date).total_seconds() >= 29, "the alert came before the deadline"
        assert airflow.run_states(DAILY) == ["running"]

        # End the stuck session once the dump waits for the lock: with no retry left its task fails
        # for good, and the scheduled run's worker sends the failure e-mail too. Paused first (the
        # running task goes on), so no next minute's run starts behind it.
        with psycopg.connect(sandbox.superuser_dsn(), autocommit=True) as admin:
            waiting = "SELECT pid FROM pg_stat_activity WHERE usename = 'hms_backup' AND wait_event_type = 'Lock'"
            deadline = time.monotonic() + 90
            while not admin.execute(waiting).fetchall():
                assert time.monotonic() < deadline, "the dump never waited for the lock\n" + airflow.task_logs()[-3000:]
                time.sleep(0.5)
            airflow.airflow("dags", "pause", DAILY)
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hms_backup'")
        holder.rollback()

    failed = mailbox.wait(DAILY, "failure", timeout_s=120, why=lambda: airflow.task_logs()[-4000:])
    text = body(failed)
    assert f"Run:     {run_id}" in text and "Try:     1 of 1" in text
    # The callback runs in the task's process just before it reports the final state.
    deadline = time.monotonic() + 30
    while not (failed_tasks := task_ids_in_state(airflow.db_path, run_id, "failed")):
        assert time.monotonic() < deadline, "the task that alerted is not failed"
        time.sleep(0.5)
    assert len(failed_tasks) == 1 and f"Task:    {failed_tasks[0]}" in text
    assert len(mailbox.new(DAILY, "failure")) == 1 and len(mailbox.new(DAILY, "deadline")) == 1, (
        "one alert of each per run"
    )


def task_ids_in_state(db_path: Path, run_id: str, state: str) -> list[str]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT task_id FROM task_instance WHERE dag_id = ? AND run_id = ? AND state = ?", (DAILY, run_id, state)
        )
        return [row[0] for row in rows]


def first_run(db_path: Path, dag_id: str) -> tuple[str, datetime]:
    with sqlite3.connect(db_path) as db:
        run_id, logical_date = db.execute(
            "SELECT run_id, logical_date FROM dag_run WHERE dag_id = ? ORDER BY id LIMIT 1", (dag_id,)
        ).fetchone()
    parsed = datetime.fromisoformat(str(logical_date))
    return str(run_id), parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
