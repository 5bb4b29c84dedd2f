"""The restore test's logical part: the daily set's payload (or every file of a directory-format
set) downloaded and proven against its manifest, decrypted with the restore key and restored
with ``pg_restore -j`` into a fresh scratch database on the isolated restore server
(``hms_dr.restore``), each table's content digest taken as soon as its rows are in
(``hms_dr.logical.as_restored``), checked against the set's baselines, and the scratch database
dropped whatever happened (unless the run keeps it).

In an upgrade rehearsal the "restore server" is the rehearsal server of a newer major (the edge
passes it as ``target``); pg_restore and the checks' pg_dump are then that major's
(``hms_dr.database.client_tools``), and the baselines are the same, exact ones.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hms_dr import restore
from hms_dr.catalog import find_set
from hms_dr.database import client_tools
from hms_dr.logical.as_restored import digesting_as_restored
from hms_dr.logical.content import DigestTaken
from hms_dr.manifest import BackupKind
from hms_dr.policy import ClusterPolicy, RestoreTestPolicy, StagingPolicy
from hms_dr.restore_test.records import LogicalRestore, RestoreTestPart, RestoreTestPlan, RestoreTestReport
from hms_dr.restore_test.report import Announce, RestoredCopy, check_and_report
from hms_dr.scratch import database as scratch_databases
from hms_dr.scratch.workdir import WorkPurpose, work_folder

if TYPE_CHECKING:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.pgtools import ConnectionInfo
    from hms_dr.store import Store

log = logging.getLogger(__name__)


def restore_into_scratch(
    plan: RestoreTestPlan,
    *,
    store: Store,
    cluster: ClusterPolicy,
    staging: StagingPolicy,
    key: DecryptionKey,
    target: ConnectionInfo,
) -> LogicalRestore:
    """Download and prove the payload, decrypt it, pg_restore it into a fresh scratch database on
    ``target`` (the restore server, as a role that may create databases), taking the content
    digests of its tables as pg_restore restores them (handed to the checks in the record)."""
    fetch_started_at = datetime.now(UTC)
    backup_set = find_set(store, cluster.name, BackupKind.LOGICAL, plan.backup_set_id)
    workdir = work_folder(staging.dir, WorkPurpose.RESTORE_TEST, plan.scratch_database)
    scratch = target.with_database(plan.scratch_database)
    try:
        fetched = restore.fetch_for_restore(store, backup_set, key, workdir, jobs=plan.restore_jobs)
        scratch_databases.create_scratch_database(target, plan.scratch_database)
        restored, content, digest_s = restore_taking_digests(
            scratch,
            fetched.path,
            backup_set.manifest.baselines,
            jobs=plan.restore_jobs,
            expected_bytes=restore.source_database_size(backup_set),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the decrypted dump never outlives the step
    steps_s = {
        "download_and_verify": round(fetched.download_seconds, 3),
        "decrypt": round(fetched.decrypt_seconds, 3),
        "pg_restore": restored["seconds"],
    }
    if content is not None:
        steps_s["content_digest_after_restore"] = round(digest_s, 3)
    return LogicalRestore(
        fetch_started_at=fetch_started_at,
        steps_s=steps_s,
        stored_size_bytes=fetched.stored_size_bytes,
        plain_size_bytes=fetched.plain_size_bytes,
        content=content.to_json() if content is not None else None,
    )


def restore_taking_digests(
    scratch: ConnectionInfo,
    archive: Path,
    baselines: Mapping[str, Any],
    *,
    jobs: int,
    expected_bytes: int | None,
) -> tuple[dict[str, Any], DigestTaken | None, float]:
    """``pg_restore -j`` of ``archive`` into ``scratch`` while the content digests of its tables are
    taken as each table's rows are in (``as_restored``). Returns pg_restore's record, the digests
    (None when the set has none: the checks then take none), and the seconds the digests took
    after pg_restore ended."""
    with digesting_as_restored(scratch, archive, baselines, client_tools(scratch)) as digesting:
        restored = restore.run_pg_restore(
            scratch, archive, jobs=jobs, expected_bytes=expected_bytes, on_line=digesting.line if digesting else None
        )
        started = time.monotonic()
        content = digesting.result() if digesting is not None else None
        return restored, content, time.monotonic() - started


def check_logical_restore(
    plan: RestoreTestPlan,
    restored: LogicalRestore,
    *,
    target: ConnectionInfo,
    store: Store,
    cluster: ClusterPolicy,
    restore_test: RestoreTestPolicy,
    staging: StagingPolicy,
    rto_minutes: int,
    announce: Announce,
) -> RestoreTestReport:
    """The scratch database checked against the set's baselines, the report stored and announced
    whatever the outcome; then a failed check or an RTO over target fails (``report``)."""
    copy = RestoredCopy(
        RestoreTestPart.LOGICAL,
        target.with_database(plan.scratch_database).libpq_dsn(),
        restored.fetch_started_at,
        restored.steps_s,
        scratch_database=plan.scratch_database,
        upgrade_rehearsal=plan.upgrade_rehearsal.describe() if plan.upgrade_rehearsal else None,
        content=DigestTaken.from_json(restored.content) if restored.content is not None else None,
    )
    return check_and_report(
        plan,
        copy,
        store=store,
        cluster=cluster,
        restore_test=restore_test,
        staging=staging,
        rto_minutes=rto_minutes,
        announce=announce,
    )


def drop_scratch_database(plan: RestoreTestPlan | None, *, target: Callable[[], ConnectionInfo]) -> str:
    """Teardown: drop the scratch database whether the run passed or failed (unless kept).
    ``target`` gives the restore server, asked for only when there is a database to drop."""
    if plan is None:
        return "nothing to drop: no scratch database was planned"
    if plan.keep_scratch:
        log.warning("keep_scratch is set: scratch database %s is left on the restore server", plan.scratch_database)
        return f"kept {plan.scratch_database}"
    existed = scratch_databases.drop_scratch_database(target(), plan.scratch_database)
    return f"dropped {plan.scratch_database}" if existed else f"{plan.scratch_database} was never created"
