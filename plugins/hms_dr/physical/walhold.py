"""Keeping the server's WAL for the length of a streamed base backup.

The streamed method runs ``pg_basebackup -X fetch`` (WAL cannot be streamed beside a tar on
stdout): the server sends the WAL of the backup window at the end, from its pg_wal. On a busy
primary a checkpoint during a long copy may recycle those segments first, and the backup fails at
its very end. A temporary physical replication slot, created with RESERVE_WAL before the backup
starts, holds every segment from then on; it lives exactly as long as this connection, so a
killed worker never leaves a slot that fills the primary's disk.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from hms_dr.database import first_line
from hms_dr.errors import PreflightFailed
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.pgbasebackup import replication_connection_hint

log = logging.getLogger(__name__)


def slot_name() -> str:
    # Slot names: lower-case letters, digits and underscores, at most 63 characters.
    return f"hms_dr_base_backup_{uuid.uuid4().hex[:12]}"


@contextmanager
def wal_held(conn: ConnectionInfo) -> Iterator[str]:
    """A temporary slot reserving WAL from now on, for the ``with`` block; its name."""
    import psycopg

    name = slot_name()
    where = f"{conn.host}:{conn.port}"
    try:
        connection = psycopg.connect(**conn.psycopg_kwargs(), replication="true", autocommit=True)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        reason = first_line(exc)
        raise PreflightFailed(
            f"cannot open a replication connection to {where} as {conn.user} to hold the backup's WAL: {reason}",
            hint=replication_connection_hint(reason, where) or "nothing was copied or stored",
        ) from None
    try:
        # A replication connection speaks the simple query protocol only: a client-side cursor.
        cursor = psycopg.ClientCursor(connection)
        try:
            cursor.execute(f"CREATE_REPLICATION_SLOT {name} TEMPORARY PHYSICAL RESERVE_WAL")
        except psycopg.Error as exc:
            raise PreflightFailed(
                f"{where} cannot create a temporary replication slot to hold the backup's WAL: {first_line(exc)}",
                hint="raise max_replication_slots (and max_wal_senders) on the server, or wait for other backups",
            ) from None
        log.info("WAL held on %s by temporary slot %s for the length of the backup", where, name)
        yield name
    finally:
        connection.close()
