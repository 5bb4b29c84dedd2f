"""While a writer inserts, updates and deletes appointments and billing throughout the backup,
the restored database matches the manifest's baselines exactly: the dump and the baselines are
one point in time, the exported snapshot, and production has moved on since.

The writer records the transaction id of each of its commits, so the test knows exactly which
of them the backup's snapshot (``snapshot.txid_snapshot`` in the manifest) can see, and checks
the restored rows against those and only those.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from restoring import drop_database, fetch_plain, observed_baselines, restore_into_new_database

from hms_dr.baseline import diff_baselines
from hms_dr.catalog import find_set
from hms_dr.manifest import BackupKind, parse_utc

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG_ID = "hms_daily_logical_backup"
WRITER_REASON = "hms-dr concurrent writer test"
WARM_UP_COMMITS = 30  # committed before the DAG starts
MIN_COMMITS_DURING_DUMP = 50
POOL_SIZE = 40
STATUSES = ("checked_in", "completed", "no_show", "cancelled", "scheduled")


@dataclass(frozen=True)
class Commit:
    """One committed writer transaction and what it changed."""

    seq: int
    xid: int
    op: str  # insert | update_appointment | update_billing | delete
    committed_at: float  # time.time() once COMMIT returned
    appointment_id: int = 0  # 0: not touched by this commit
    billing_id: int = 0
    status: str = ""
    notes: str = ""

    @property
    def delta(self) -> int:
        """Rows this commit added to appointments, and to billing (always the same)."""
        return {"insert": 1, "delete": -1}.get(self.op, 0)


@dataclass
class Originals:
    """The pool rows the writer updates, as they were before it started."""

    appointments: dict[int, tuple[str, str | None]]  # id -> (status, notes)
    billing: dict[int, tuple[str, str | None]]  # id -> (total_amount as text, notes)


class ConcurrentWriter(threading.Thread):
    """Short committed transactions against appointments and billing until stopped."""

    def __init__(self, dsn: str, originals: Originals) -> None:
        super().__init__(name="concurrent-writer", daemon=True)
        self.dsn = dsn
        self.tag = uuid.uuid4().hex[:6]
        self.appointment_pool = sorted(originals.appointments)
        self.billing_pool = sorted(originals.billing)
        self.commits: list[Commit] = []
        self.warmed_up = threading.Event()
        self.stop_requested = threading.Event()
        self.error: BaseException | None = None
        self._live_pairs: list[tuple[int, int]] = []  # (appointment_id, billing_id) inserted, not deleted

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                # Commit speed is the point here, not durability: visibility is unchanged.
                conn.execute("SET synchronous_commit = off")
                patients = [r[0] for r in conn.execute("SELECT id FROM patients ORDER BY id LIMIT 200")]
                doctors = conn.execute(
                    "SELECT id, department_id FROM staff WHERE role = 'doctor' ORDER BY id LIMIT 50"
                ).fetchall()
                assert patients and doctors
                seq = 0
                while not self.stop_requested.is_set():
                    self.commits.append(self._one_transaction(conn, seq, patients, doctors))
                    seq += 1
                    if seq == WARM_UP_COMMITS:
                        self.warmed_up.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.warmed_up.set()  # never leave the test waiting on a writer that died

    def _one_transaction(self, conn: Any, seq: int, patients: list[int], doctors: list[tuple[int, int]]) -> Commit:
        slot = seq % 10
        op = (
            "insert"
            if slot < 4 or (slot == 9 and not self._live_pairs)
            else ("update_appointment" if slot < 7 else "update_billing" if slot < 9 else "delete")
        )
        with conn.transaction():
            xid = int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
            if op == "insert":
                doctor_id, department_id = doctors[seq % len(doctors)]
                patient_id = patients[seq % len(patients)]
                appointment_id = conn.execute(
                    "INSERT INTO appointments (patient_id, doctor_id, department_id, scheduled_at, reason) "
                    "VALUES (%s, %s, %s, timestamptz '2025-06-01 08:00+00' + make_interval(mins => %s), %s) RETURNING id",
                    (patient_id, doctor_id, department_id, seq, WRITER_REASON),
                ).fetchone()[0]
                billing_id = conn.execute(
                    "INSERT INTO billing (invoice_no, patient_id, appointment_id, issued_at, due_date, subtotal, total_amount, status) "
                    "VALUES (%s, %s, %s, now(), current_date + 30, %s, %s, 'issued') RETURNING id",
                    (f"CW-{self.tag}-{seq}", patient_id, appointment_id, 100 + seq % 50, 100 + seq % 50),
                ).fetchone()[0]
                change = Commit(seq, xid, op, 0.0, appointment_id=appointment_id, billing_id=billing_id)
            elif op == "update_appointment":
                appointment_id = self.appointment_pool[seq % len(self.appointment_pool)]
                status, notes = STATUSES[seq % len(STATUSES)], f"cw-{self.tag}-{seq}"
                updated = conn.execute(
                    "UPDATE appointments SET status = %s, notes = %s WHERE id = %s", (status, notes, appointment_id)
                )
                assert updated.rowcount == 1
                change = Commit(seq, xid, op, 0.0, appointment_id=appointment_id, status=status, notes=notes)
            elif op == "update_billing":
                billing_id = self.billing_pool[seq % len(self.billing_pool)]
                notes = f"cw-{self.tag}-{seq}"
                updated = conn.execute(
                    "UPDATE billing SET tax = tax + 1, total_amount = total_amount + 1, notes = %s WHERE id = %s",
                    (notes, billing_id),
                )
                assert updated.rowcount == 1
                change = Commit(seq, xid, op, 0.0, billing_id=billing_id, notes=notes)
            else:
                appointment_id, billing_id = self._live_pairs[0]
                assert conn.execute("DELETE FROM billing WHERE id = %s", (billing_id,)).rowcount == 1
                assert conn.execute("DELETE FROM appointments WHERE id = %s", (appointment_id,)).rowcount == 1
                change = Commit(seq, xid, op, 0.0, appointment_id=appointment_id, billing_id=billing_id)
        # Committed: only now does the writer's own bookkeeping follow.
        if op == "insert":
            self._live_pairs.append((change.appointment_id, change.billing_id))
        elif op == "delete":
            self._live_pairs.pop(0)
        return replace(change, committed_at=time.time())

    def stop(self) -> None:
        self.stop_requested.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the concurrent writer did not stop"


@dataclass(frozen=True)
class Snapshot:
    """A pg_snapshot as text, xmin:xmax:xip,...: which transaction ids it sees as committed."""

    xmin: int
    xmax: int
    in_progress: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees(self, xid: int) -> bool:
        return xid < self.xmin or (xid < self.xmax and xid not in self.in_progress)


@dataclass
class ExpectedRows:
    """What the writer's commits leave in appointments and billing, from the originals on."""

    writer_appointments: set[int]
    writer_billing: set[int]
    pool_appointments: dict[int, tuple[str, str | None]]
    pool_billing: dict[int, tuple[str, str | None]]

    @classmethod
    def after(cls, originals: Originals, commits: list[Commit]) -> ExpectedRows:
        rows = cls(set(), set(), dict(originals.appointments), dict(originals.billing))
        for commit in sorted(commits, key=lambda c: c.seq):  # one connection: commit order is seq order
            if commit.op == "insert":
                rows.writer_appointments.add(commit.appointment_id)
                rows.writer_billing.add(commit.billing_id)
            elif commit.op == "delete":
                rows.writer_appointments.remove(commit.appointment_id)
                rows.writer_billing.remove(commit.billing_id)
            elif commit.op == "update_appointment":
                rows.pool_appointments[commit.appointment_id] = (commit.status, commit.notes)
            else:
                total, _ = rows.pool_billing[commit.billing_id]
                rows.pool_billing[commit.billing_id] = (str(Decimal(total) + 1), commit.notes)
        return rows


def read_originals(dsn: str) -> Originals:
    with psycopg.connect(dsn) as conn:
        appointments = conn.execute(
            "SELECT id, status::text, notes FROM appointments WHERE reason <> %s ORDER BY id DESC LIMIT %s",
            (WRITER_REASON, POOL_SIZE),
        ).fetchall()
        billing = conn.execute(
            "SELECT id, total_amount::text, notes FROM billing WHERE invoice_no NOT LIKE 'CW-%%' ORDER BY id DESC LIMIT %s",
            (POOL_SIZE,),
        ).fetchall()
    assert len(appointments) == POOL_SIZE and len(billing) == POOL_SIZE
    return Originals({r[0]: (r[1], r[2]) for r in appointments}, {r[0]: (r[1], r[2]) for r in billing})


def read_rows(dsn: str, originals: Originals) -> tuple[dict[str, int], ExpectedRows]:
    """Row counts of both tables, and the writer's rows and the pool rows as they are in ``dsn``."""
    with psycopg.connect(dsn) as conn:
        counts = {
            f"public.{table}": int(conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
            for table in ("appointments", "billing")
        }
        writer_appointments = {
            r[0] for r in conn.execute("SELECT id FROM appointments WHERE reason = %s", (WRITER_REASON,))
        }
        writer_billing = {r[0] for r in conn.execute("SELECT id FROM billing WHERE invoice_no LIKE 'CW-%%'")}
        pool_appointments = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT id, status::text, notes FROM appointments WHERE id = ANY(%s)", (list(originals.appointments),)
            )
        }
        pool_billing = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT id, total_amount::text, notes FROM billing WHERE id = ANY(%s)", (list(originals.billing),)
            )
        }
    return counts, ExpectedRows(writer_appointments, writer_billing, pool_appointments, pool_billing)


def undo_writer(dsn: str, originals: Originals) -> None:
    """Put production back as it was: the writer's rows out, the pool rows restored."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("DELETE FROM billing WHERE invoice_no LIKE 'CW-%%'")
        conn.execute("DELETE FROM appointments WHERE reason = %s", (WRITER_REASON,))
        for row_id, (status, notes) in originals.appointments.items():
            conn.execute(
                "UPDATE appointments SET status = %s::appointment_status, notes = %s WHERE id = %s",
                (status, notes, row_id),
            )
        for row_id, (total, notes) in originals.billing.items():
            conn.execute(
                "UPDATE billing SET tax = tax - (total_amount - %s::numeric), total_amount = %s::numeric, notes = %s WHERE id = %s",
                (total, total, notes, row_id),
            )


@dataclass
class ConcurrentRun:
    outcome: Any
    writer: ConcurrentWriter
    originals: Originals
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    production_after: ExpectedRows


@pytest.fixture(scope="module")
def concurrent_run(dag_runner: Any, sandbox: Any) -> Iterator[ConcurrentRun]:
    dsn = sandbox.dsn("hms_admin")
    originals = read_originals(dsn)
    counts_before, _ = read_rows(dsn, originals)
    writer = ConcurrentWriter(dsn, originals)
    writer.start()
    try:
        assert writer.warmed_up.wait(timeout=120), "the writer did not get going"
        assert writer.error is None, f"the writer failed before the backup: {writer.error!r}"
        commits_at_start = len(writer.commits)
        outcome = dag_runner.run(DAG_ID, name="concurrent-writes")
        commits_at_end = len(writer.commits)
        writer.stop()
        assert writer.error is None, f"the writer failed: {writer.error!r}"
        assert commits_at_end - commits_at_start >= MIN_COMMITS_DURING_DUMP
        counts_after, production_after = read_rows(dsn, originals)
        yield ConcurrentRun(outcome, writer, originals, counts_before, counts_after, production_after)
    finally:
        writer.stop_requested.set()
        writer.join(timeout=60)
        undo_writer(dsn, originals)


@pytest.fixture(scope="module")
def backup_set(concurrent_run: ConcurrentRun, primary_store: Any) -> Any:
    assert concurrent_run.outcome.state == "success", concurrent_run.outcome.output[-6000:]
    newest = find_set(primary_store, "hms-primary", BackupKind.LOGICAL, "latest")
    assert newest.manifest.body["producer"]["run_id"] == concurrent_run.outcome.run_id
    return newest


@pytest.fixture(scope="module")
def restored(
    backup_set: Any, primary_store: Any, restore_key: Any, sandbox: Any, tmp_path_factory: Any
) -> Iterator[str]:
    archive = fetch_plain(primary_store, backup_set, restore_key, Path(tmp_path_factory.mktemp("fetch")))
    database = restore_into_new_database(sandbox, archive)
    archive.unlink()
    try:
        yield database
    finally:
        drop_database(sandbox, database)


def split_by_snapshot(run: ConcurrentRun, backup_set: Any) -> tuple[list[Commit], list[Commit]]:
    snapshot = Snapshot.parse(backup_set.manifest.body["snapshot"]["txid_snapshot"])
    seen = [c for c in run.writer.commits if snapshot.sees(c.xid)]
    unseen = [c for c in run.writer.commits if not snapshot.sees(c.xid)]
    return seen, unseen


def test_the_writer_kept_committing_while_the_dumps_streamed(concurrent_run: ConcurrentRun, backup_set: Any) -> None:
    seen, unseen = split_by_snapshot(concurrent_run, backup_set)
    assert len(seen) >= WARM_UP_COMMITS  # the writer was running before the snapshot...
    finished_at = backup_set.manifest.finished_at.timestamp()
    taken_at = parse_utc(backup_set.manifest.body["snapshot"]["taken_at"]).timestamp()
    during_dump = [c for c in unseen if taken_at <= c.committed_at <= finished_at]
    # ...and committed many transactions after the snapshot while the dumps were still running.
    assert len(during_dump) >= MIN_COMMITS_DURING_DUMP, (len(during_dump), finished_at - taken_at)
    assert {c.op for c in during_dump} == {"insert", "update_appointment", "update_billing", "delete"}
    # The commits the snapshot sees are exactly a prefix of the writer's (one connection, in order).
    assert [c.seq for c in seen] == list(range(len(seen)))


def test_restored_database_matches_the_manifest_baselines_exactly(backup_set: Any, restored: str, sandbox: Any) -> None:
    expected = backup_set.manifest.baselines
    observed = observed_baselines(sandbox, restored, expected)
    assert diff_baselines(expected, observed) == []
    assert expected["views"]["public.v_patient_summary"]["rows"] > 0


def test_baselines_are_the_counts_at_the_snapshot_not_before_or_after(
    concurrent_run: ConcurrentRun, backup_set: Any
) -> None:
    seen, unseen = split_by_snapshot(concurrent_run, backup_set)
    delta_at_snapshot = sum(c.delta for c in seen)  # each commit changes both tables by the same count
    delta_since = sum(c.delta for c in unseen)
    baselines = backup_set.manifest.baselines["tables"]
    for table in ("public.appointments", "public.billing"):
        assert delta_at_snapshot > 0 and delta_since > 0  # the writer adds more rows than it deletes
        assert baselines[table]["rows"] == concurrent_run.counts_before[table] + delta_at_snapshot
        assert concurrent_run.counts_after[table] == baselines[table]["rows"] + delta_since
        assert concurrent_run.counts_after[table] != baselines[table]["rows"]  # production has moved on


def test_restored_rows_hold_exactly_the_writes_the_snapshot_saw(
    concurrent_run: ConcurrentRun, backup_set: Any, restored: str, sandbox: Any
) -> None:
    seen, _ = split_by_snapshot(concurrent_run, backup_set)
    expected = ExpectedRows.after(concurrent_run.originals, seen)
    counts, actual = read_rows(sandbox.superuser_dsn(restored), concurrent_run.originals)
    assert counts == {t: r["rows"] for t, r in backup_set.manifest.baselines["tables"].items() if t in counts}
    assert actual.writer_appointments == expected.writer_appointments
    assert actual.writer_billing == expected.writer_billing
    assert actual.pool_appointments == expected.pool_appointments
    assert actual.pool_billing == expected.pool_billing

    # The same bookkeeping over every commit describes production now, and production differs.
    everything = ExpectedRows.after(concurrent_run.originals, concurrent_run.writer.commits)
    production = concurrent_run.production_after
    assert production.writer_appointments == everything.writer_appointments
    assert production.pool_appointments == everything.pool_appointments
    assert production.pool_billing == everything.pool_billing
    assert production.writer_appointments != actual.writer_appointments
    assert production.pool_billing != actual.pool_billing
