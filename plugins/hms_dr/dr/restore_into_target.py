"""The restore step of hms_dr_restore: build the source (``dr.source``), move the tables into the
staging schema there and stream them into production's database (or the whole source into the
new database), then remove the source, whatever happened."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hms_dr.dr import staging as source_tables
from hms_dr.dr.copy import copy_objects, create_target_database
from hms_dr.dr.source import build_source
from hms_dr.dr.validated import ValidatedRestore
from hms_dr.pgtools import ConnectionInfo
from hms_dr.records import Record

if TYPE_CHECKING:
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import ClusterPolicy, DrPolicy, DrRestorePolicy, StagingPolicy
    from hms_dr.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoredIntoTarget(Record):
    """What the restore did (the audit record keeps it)."""

    started_at: datetime
    source: str  # the scratch database or cluster, one line
    restored_into: str  # the staging schema or the new database, one line
    sql_bytes: int
    steps_s: dict[str, float]
    recovery: dict[str, Any] | None = None  # point in time: what the recovery reached
    foreign_keys_left_out: list[str] | None = None  # staging schema: dropped in the source, recreated by the swap
    tables_left_out: list[str] | None = None  # new database of chosen tables: the set's other tables


def restore_into_target(
    plan: ValidatedRestore,
    *,
    store: Store,
    cluster: ClusterPolicy,
    dr: DrPolicy,
    restore_settings: DrRestorePolicy,
    staging: StagingPolicy,
    admin: ConnectionInfo,
    restore_target: Callable[[], ConnectionInfo],
    decryption_key: DecryptionKey,
) -> RestoredIntoTarget:
    """``admin`` is production's admin connection; ``restore_target`` the restore server's (read
    only for a logical set)."""
    started = datetime.now(UTC)
    tables = plan.table_names
    source = build_source(
        plan,
        store=store,
        cluster=cluster,
        dr=dr,
        restore_settings=restore_settings,
        staging=staging,
        admin=admin,
        restore_target=restore_target,
        decryption_key=decryption_key,
    )
    steps = {source.step: source.seconds}
    foreign_keys_left_out: list[str] | None = None
    tables_left_out: list[str] | None = None
    try:
        moment = datetime.now(UTC)
        if plan.into_staging_schema:
            assert plan.staging_schema is not None
            foreign_keys_left_out = source_tables.stage_tables_in_source(
                source.connection, tables, plan.staging_schema
            )["foreign_keys_left_out"]
            copied = copy_objects(source.connection, admin, schema=plan.staging_schema)
            restored_into = f"schema {plan.staging_schema} of {admin.dbname}"
        else:
            assert plan.target_database is not None
            if not plan.whole_database:
                tables_left_out = source_tables.keep_only_tables(
                    source.connection, tables, source_tables.list_tables(source.connection)
                )
            create_target_database(admin, plan.target_database, like=cluster.database)
            copied = copy_objects(source.connection, admin.with_database(plan.target_database), schema=None)
            restored_into = f"database {plan.target_database} on {admin.host}:{admin.port}"
        steps["copy_into_target"] = (datetime.now(UTC) - moment).total_seconds()
    finally:
        source.remove()
    log.info(
        "restored %s into %s in %.0f s",
        ", ".join(plan.tables),
        restored_into,
        (datetime.now(UTC) - started).total_seconds(),
    )
    return RestoredIntoTarget(
        started_at=started,
        source=source.description,
        restored_into=restored_into,
        sql_bytes=int(copied["sql_bytes"]),
        steps_s={name: round(seconds, 3) for name, seconds in steps.items()},
        recovery=source.recovery,
        foreign_keys_left_out=foreign_keys_left_out,
        tables_left_out=tables_left_out,
    )
