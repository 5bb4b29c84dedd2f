"""hms_dr_restore, runbook scenario 1, from the point in time just before the deletion.

After the nightly dump the hospital books five more appointments; then a bad clean-up job
deletes the cancelled ones. Restored from the dump, the five would be lost; restored from the
moment before the deletion — a scratch cluster recovered from the base backup and the archived
WAL — production gets both back: the deleted rows and the ones booked after the dump. The
scratch cluster is gone afterwards, and the audit trail names the recovery target.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from archiving import Archiver, switch_wal
from test_dr_restore_logical import REASON, assert_no_secret_in, audit_of, run_dr, sql

from hms_dr.catalog import find_set
from hms_dr.crypto import EncryptionKey
from hms_dr.dr.request import run_key
from hms_dr.dr.validate import scratch_cluster_for
from hms_dr.manifest import BackupKind
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.basebackup import take_base_backup
from hms_dr.policy import EncryptionMode, load_policy
from hms_dr.server_user import port_is_open
from hms_dr.wal.ship import ship_spool

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CLUSTER = "hms-primary"


@pytest.fixture(scope="module")
def incident(sandbox: Any, dag_runner: Any, primary_store: Any) -> Iterator[dict[str, Any]]:
    """Base backup, nightly dump, five bookings, the moment, the deletion, WAL shipped."""
    key = EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)
    policy = load_policy(Path(sandbox.paths.policy_file))
    staging = Path(sandbox.state_dir) / "staging" / "dr-pitr-test"
    staging.mkdir(parents=True, exist_ok=True)
    replica = ConnectionInfo(
        "127.0.0.1",
        sandbox.pg_port,
        "hms_replica",
        sandbox.database,
        password=sandbox.secrets.role_passwords["hms_replica"],
    )
    take_base_backup(replica, primary_store, CLUSTER, encryption_key=key, staging_dir=staging, zstd_level=1)
    dumped = dag_runner.run("hms_daily_logical_backup")
    assert dumped.state == "success", dumped.output[-4000:]
    rows_in_dump = find_set(primary_store, CLUSTER, BackupKind.LOGICAL, "latest").manifest.baselines["tables"][
        "public.appointments"
    ]["rows"]
    schemas_before = {r[0] for r in sql(sandbox, "SELECT nspname FROM pg_namespace")}
    with psycopg.connect(sandbox.superuser_dsn(sandbox.database), autocommit=True) as conn:
        booked = [
            r[0]
            for r in conn.execute(
                "INSERT INTO appointments (patient_id, doctor_id, department_id, scheduled_at, reason) "
                "SELECT patient_id, doctor_id, department_id, scheduled_at + interval '30 days', 'booked after the dump' "
                "FROM appointments WHERE status = 'completed' ORDER BY id LIMIT 5 RETURNING id"
            ).fetchall()
        ]
        rows_before = conn.execute("SELECT count(*) FROM appointments").fetchone()[0]  # type: ignore[index]
        moment = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        time.sleep(1.2)  # the deletion commits well after the moment
        deleted = [r[0] for r in conn.execute("SELECT id FROM appointments WHERE status = 'cancelled'").fetchall()]
        with conn.transaction():
            conn.execute(
                "DELETE FROM billing WHERE appointment_id IN (SELECT id FROM appointments WHERE status = 'cancelled')"
            )
            conn.execute("DELETE FROM appointments WHERE status = 'cancelled'")
        segment = switch_wal(conn)
    spool = Path(policy.wal.spool_dir)
    Archiver.of_sandbox(sandbox).wait_spooled([segment])
    ship_spool(
        primary_store, CLUSTER, spool, encryption_key=key, zstd_level=1, staging_dir=staging, remove_from_spool=True
    )
    yield {
        "booked": booked,
        "deleted": deleted,
        "rows_in_dump": rows_in_dump,
        "rows_before": rows_before,
        "rows_after_damage": rows_before - len(deleted),
        "moment": moment.isoformat(),
        "policy": policy,
    }
    for (schema,) in sql(sandbox, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dr\\_%'"):
        if schema not in schemas_before:
            sql(sandbox, f'DROP SCHEMA "{schema}" CASCADE')


def test_a_point_in_time_restore_brings_back_the_deleted_rows_and_keeps_those_booked_after_the_dump(
    dag_runner: Any, sandbox: Any, incident: dict[str, Any], primary_store: Any, dags_test_approvals: Any
) -> None:
    assert incident["rows_before"] == incident["rows_in_dump"] + 5  # the dump alone would lose the five bookings
    outcome = run_dr(
        dag_runner,
        {
            "source": "point_in_time",
            "target_time": incident["moment"],
            "tables": ["appointments"],
            "swap_into_production": True,
            "reason": REASON,
        },
        approve=dags_test_approvals,
    )
    assert outcome.state == "success", outcome.output[-6000:]
    quarantine = f"dr_quarantine_{run_key(outcome.run_id)}"

    assert sql(sandbox, "SELECT count(*) FROM appointments")[0][0] == incident["rows_before"]
    assert sql(sandbox, "SELECT count(*) FROM appointments WHERE id = ANY(%s)", incident["booked"])[0][0] == 5
    assert (
        sql(sandbox, "SELECT count(*) FROM appointments WHERE id = ANY(%s)", incident["deleted"])[0][0]
        == len(incident["deleted"])
        > 0
    )
    assert sql(sandbox, f'SELECT count(*) FROM "{quarantine}".appointments')[0][0] == incident["rows_after_damage"]
    assert (
        sql(
            sandbox,
            "SELECT count(*) FROM pg_constraint WHERE confrelid = 'public.appointments'::regclass AND convalidated",
        )[0][0]
        == 2
    )

    # the scratch cluster is stopped and removed; only production is left
    cluster = scratch_cluster_for(incident["policy"].dr, incident["policy"].staging, run_key(outcome.run_id))
    assert not cluster.home.exists()
    assert "scratch cluster on 127.0.0.1:" in outcome.output
    port = int(outcome.output.split("scratch cluster on 127.0.0.1:")[1].split(" ")[0])
    assert not port_is_open(port)

    records = audit_of(primary_store, outcome.run_id)
    assert [r["event"] for r in records] == ["started", "approved", "succeeded"]
    final = records[-1]
    assert final["details"]["plan"]["recovery_target"]["kind"] == "time"
    assert final["details"]["restored"]["recovery"]["recovery_end_time"] is not None
    assert "no baselines exist for a point in time" in final["details"]["checks"]["note"]
    assert final["details"]["rows_restored"] == {"public.appointments": incident["rows_before"]}
    assert_no_secret_in(records, sandbox)
