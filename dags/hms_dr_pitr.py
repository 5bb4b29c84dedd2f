"""Point-in-time recovery into a NEW cluster (runbook: "Scenario 2: Hardware Failure").

Builds a new PostgreSQL cluster from a stored base backup set and the archived WAL, replayed to
the target the operator chose: a time, an LSN, a restore point, a transaction id, `immediate`
(the base backup's consistent point) or `latest` (everything archived). The first task checks
every parameter again, the host (the data directory is new or empty and below one of the
policy's `dr.allowed_data_roots`, the port is free) and the recovery plan (a base backup older
than the target, WAL up to it, no gap) before anything is created; it never writes into a
non-empty data directory. The base backup is proven by sha256 and `pg_verifybackup`, every WAL
file by sha256, and the server is promoted (or, with `promote` off, paused at the target,
read-only). The log ends with how to connect (`psql -h 127.0.0.1 -p <port> ...`; the new cluster
has production's roles) and the RTO, from the trigger to promotion. Production is never touched:
the new cluster listens on 127.0.0.1 and never archives. Every run is audited (who, when, why,
params, outcome) in the store. Runs on the database-host worker (queue `wal.spool_queue`).

Pages: the on-call DBA, when a step fails for good, or when the run is not done within the
policy's deadline (`alerts.deadlines.hms_dr_pitr`, counted from when the run was queued). A
request the first task refuses (an unknown or malformed param, a target in the future or before
the oldest base backup, a base backup that does not exist, a data directory that is not empty)
fails the run and is audited, but pages nobody.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from hms_dr.patterns import BACKUP_SET_ID, whole
from hms_dr.policy import load_policy
from hms_dr.tasks.alerting import dag_deadlines
from hms_dr.tasks.dagargs import task_defaults
from hms_dr.tasks.dr_pitr import record_outcome, recover_cluster, report_connection, validate_request

policy = load_policy()
dr = policy.dr
first_port, last_port = dr.pitr_port_range
roots = ", ".join(f"`{root}`" for root in dr.allowed_data_roots) or "none: set `dr.allowed_data_roots` in the policy"

with DAG(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    max_active_runs=1,
    tags=["hms-dr", "dr"],
    deadline=dag_deadlines(policy, Path(__file__).stem),
    # the data directory and the port are the database host's: its worker serves this queue
    default_args=task_defaults(
        policy, dr, execution_timeout=timedelta(minutes=dr.pitr_execution_timeout_min), queue=policy.wal.spool_queue
    ),
    params={
        "target_type": Param(
            "latest",
            type="string",
            enum=["time", "lsn", "name", "xid", "immediate", "latest"],
            title="Recovery target type",
            description=(
                "time: a moment (ISO-8601 with a zone); lsn: a WAL position; name: a restore point "
                "(pg_create_restore_point); xid: a transaction id; immediate: the base backup's consistent "
                "point; latest: everything archived."
            ),
        ),
        "target": Param(
            None,
            type=["null", "string"],
            maxLength=100,
            title="Recovery target",
            description=(
                "For time: 2026-11-24T14:59:00Z (just before the damage); lsn: 0/3000060; name: the restore "
                "point; xid: 12345. Empty for immediate and latest."
            ),
        ),
        "base_backup_id": Param(
            None,
            type=["null", "string"],
            pattern=whole(BACKUP_SET_ID),
            title="Base backup set",
            description="Empty: the newest base backup consistent before the target (automatic). Or a set id such as 20261122T030000Z.",
        ),
        "data_directory": Param(
            type="string",
            pattern=r"^/[^\x00-\x1f]*$",
            minLength=2,
            maxLength=80,
            title="Data directory of the new cluster",
            description=f"An absolute path, new or empty, below an allowed root ({roots}). Never a live cluster's directory.",
        ),
        "port": Param(
            None,
            type=["null", "integer"],
            minimum=first_port,
            maximum=last_port,
            title="Port of the new cluster",
            description=f"The new server listens on 127.0.0.1:<port>, {first_port}-{last_port}. Empty: the first free one.",
        ),
        "promote": Param(
            True,
            type="boolean",
            title="Promote",
            description=(
                "On: the new cluster is opened for writes at the target. Off: it pauses there, read-only, for "
                "inspection (SELECT pg_promote() opens it); needs a target other than latest."
            ),
        ),
        "reason": Param(
            type="string",
            minLength=5,
            maxLength=500,
            title="Reason",
            description="Why this recovery is run (the incident, the ticket): recorded in the audit trail with your user name.",
        ),
    },
):
    request = validate_request()
    recovered = recover_cluster(request)
    reported = report_connection(request, recovered)
    # A teardown with no setup: it runs however the steps ended (a refused request included) and
    # the run's state stays theirs, so a failed recovery never looks successful.
    reported >> record_outcome().as_teardown()
