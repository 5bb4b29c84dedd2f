"""WAL archiving: files PostgreSQL's archive_command spooled, shipped to the store one set per file.

Each archived file (segment, ``.history``, ``.backup``, ``.partial``) becomes its own set
``<cluster>/wal/<file name>/`` holding ``<file name>.zst.gpg`` and a ``manifest.json`` of kind
``wal`` whose backup_set_id is the file name. ``names`` parses WAL file names, ``spool`` reads
the spool and decides what to ship, ``ship`` stores and publishes, ``rpo`` measures the
recovery point and judges ``pg_stat_archiver``. Which WAL may expire is retention's to plan
(``hms_dr.retention.wal``): it follows the base backups retention keeps.
"""

from __future__ import annotations
