"""Content digests of a restore in progress: each table's rows digested as soon as pg_restore has
restored them, while it goes on with the other tables and builds the indexes.

``pg_restore -j --verbose`` says ``finished item <dump id> TABLE DATA <table>`` when a table's rows
are in, and the archive's table of contents says which table that dump id is. One worker digests
the tables finished so far with one ``pg_dump --data-only --table=... | archive_digest.py``
(``content.RestoredDigest``, the restored database's digest the checks took after the restore
before), then the tables finished meanwhile, and so on; when pg_restore has ended, what is left
(the tables it never announced: a serial restore announces none, a partitioned table's parent has
no rows of its own) and the large objects. A table's rows do not change after its data item:
pg_restore's later items build indexes and add constraints, which read rows and never write them.
So the digests are those one pg_dump of the whole restored database gives, taken while the
restore still works on the indexes instead of after it.

Each pg_dump holds its tables' ACCESS SHARE locks while it copies them out: pg_restore adding a
primary key to one of them waits until that dump ends (and a dump waits for a key being added).
Neither waits for anything the other holds, so it costs time, never a deadlock; a batch is what
finished since the last one, so a dump locks few tables for long.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hms_dr.errors import BackupVerificationFailed, HmsDrError
from hms_dr.logical import archive_digest
from hms_dr.logical.content import (
    METHOD,
    ContentDigests,
    DigestTaken,
    RestoredDigest,
    restored_dump_env,
    tables_to_digest,
)
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo

log = logging.getLogger(__name__)

# pg_restore's line when a worker has restored an item (pg_backup_archiver.c, mark_restore_job_done).
_FINISHED_TABLE_DATA = re.compile(r"^pg_restore: finished item (\d+) TABLE DATA ")


def finished_table_data(line: str) -> int | None:
    """The dump id of the table data item a ``pg_restore --verbose`` line says is restored, if any."""
    match = _FINISHED_TABLE_DATA.match(line)
    return int(match.group(1)) if match else None


def table_data_items(archive: Path) -> dict[int, tuple[str, str]]:
    """Dump id -> (schema, table) of each table's data in a custom archive, or in the directory
    dump ``archive`` is; empty when its table of contents cannot be read here (every table is
    then digested once the restore has ended, as before)."""
    directory = archive.is_dir()
    try:
        with open(archive / "toc.dat" if directory else archive, "rb") as stream:
            return archive_digest.table_data_entries(stream, directory=directory)
    except (OSError, archive_digest.ArchiveError) as exc:
        log.warning(
            "content digests wait for the end of the restore: cannot read %s's table of contents: %s", archive, exc
        )
        return {}


@contextmanager
def digesting_as_restored(
    target: ConnectionInfo, archive: Path, baselines: Mapping[str, Any], pg: PgInstall
) -> Iterator[DigestAsRestored | None]:
    """A ``DigestAsRestored`` of ``archive`` being restored into ``target`` (the scratch database),
    for the tables ``baselines`` hold digests of; None when they hold none, or hold digests of a
    method this version cannot take (the checks say so). Nothing of it outlives the block."""
    try:
        wanted = tables_to_digest(baselines)
    except BackupVerificationFailed:
        wanted = None  # the checks refuse the set, naming the method
    if wanted is None or not (wanted[0] or wanted[1]):
        yield None
        return
    tables, whole = wanted
    conninfo = {key: str(value) for key, value in target.psycopg_kwargs().items() if key != "application_name"}
    digesting = DigestAsRestored(
        conninfo,
        pg,
        tables=tables,
        large_objects=whole,
        encoding=baselines["content_digest"].get("encoding"),
        items=table_data_items(archive),
    )
    try:
        yield digesting
    finally:
        digesting.cancel()


class DigestAsRestored:
    """Digests a restoring database's tables as pg_restore reports them restored. Feed it
    pg_restore's verbose lines (``line``), then call ``result`` once pg_restore has succeeded
    (or ``cancel``: no pg_dump outlives it, the scratch database stays droppable)."""

    def __init__(
        self,
        conninfo: Mapping[str, str],
        pg: PgInstall,
        *,
        tables: Sequence[tuple[str, str]],
        large_objects: bool,
        encoding: str | None,
        items: Mapping[int, tuple[str, str]],
    ) -> None:
        self._env = restored_dump_env(conninfo, encoding)
        self._pg = pg
        self._wanted = list(tables)
        self._large_objects = large_objects
        wanted = set(tables)
        self._items = {dump_id: table for dump_id, table in items.items() if table in wanted}
        self._ready: list[tuple[str, str]] = []
        self._taken: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._encoding: str | None = encoding
        self._error: str | None = None
        self._running: RestoredDigest | None = None
        self._restore_ended = False
        self._cancelled = False
        self._changed = threading.Condition()
        self._batches = 0
        self._large_objects_record: Mapping[str, Any] | None = None
        self._worker = threading.Thread(target=self._work, name="digest-as-restored", daemon=True)
        self._worker.start()

    def line(self, text: str) -> None:
        """One line of ``pg_restore --verbose``: a table whose rows are in is queued for its digest."""
        dump_id = finished_table_data(text)
        table = self._items.get(dump_id) if dump_id is not None else None
        if table is not None:
            with self._changed:
                self._ready.append(table)
                self._changed.notify()

    def result(self) -> DigestTaken:
        """After pg_restore succeeded: the rest digested, and every digest taken (or the error)."""
        started = time.monotonic()
        with self._changed:
            self._restore_ended = True
            self._changed.notify()
        self._worker.join()
        during = len(self._taken)
        if self._error is None:
            self._digest_the_rest()
        log.info(
            "content digests of %d tables%s: %d taken during the restore (%d pg_dump runs), the rest %.1f s after it",
            len(self._wanted),
            " and the large objects" if self._large_objects else "",
            during,
            self._batches,
            time.monotonic() - started,
        )
        if self._error is not None:
            return DigestTaken(None, self._error)
        return DigestTaken(
            ContentDigests(METHOD, self._encoding, dict(self._taken), self._large_objects_record),
            while_restoring=during,
        )

    def cancel(self) -> None:
        with self._changed:
            self._cancelled = True
            running = self._running
            self._changed.notify()
        if running is not None:
            running.cancel()
        self._worker.join(timeout=60)

    def _work(self) -> None:
        while True:
            with self._changed:
                while not (self._ready or self._restore_ended or self._cancelled):
                    self._changed.wait()
                if self._cancelled or self._error is not None or not self._ready:
                    return
                batch, self._ready = self._ready, []
            self._digest(tables=batch)

    def _digest_the_rest(self) -> None:
        """What was not digested during the restore: a whole database's (baselines with large
        objects) is dumped whole but for the rows already digested, as the checks dumped it
        before, so a table missing from it reads as missing; a few tables' by name."""
        rest = [table for table in self._wanted if table not in self._taken]
        if self._large_objects:
            self._digest(tables=None, without=list(self._taken))
        elif rest:
            self._digest(tables=rest)

    def _digest(self, *, tables: list[tuple[str, str]] | None, without: Sequence[tuple[str, str]] = ()) -> None:
        try:
            with self._changed:
                if self._cancelled:
                    return
                digest = RestoredDigest(
                    self._env, self._pg, tables=tables, large_objects=self._large_objects, without=without
                )
                self._running = digest
            taken = digest.result()
        except Exception as exc:  # the checks report it (every content row fails, naming it); after a cancel, nothing
            with self._changed:
                if not self._cancelled and self._error is None:
                    self._error = exc.message if isinstance(exc, HmsDrError) else f"{type(exc).__name__}: {exc}"
            return
        finally:
            with self._changed:
                self._running = None
        self._batches += 1
        self._encoding = taken.encoding or self._encoding
        for table in tables if tables is not None else self._wanted:
            record = taken.tables.get(table)
            if record is not None and table not in self._taken:
                self._taken[table] = record
        if tables is None:
            self._large_objects_record = taken.large_objects
