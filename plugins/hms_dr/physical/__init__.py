"""Physical backups of the whole cluster: weekly base backups, and point-in-time recovery from them.

Base backups: ``basebackup.take_base_backup`` runs the steps (``preflight``, ``pgbasebackup``,
``verifybackup``, ``staging`` into the store, publish); ``hms_dr.retention`` keeps the newest few.
Incremental base backups form chains (full to tip): ``chain`` reads and checks them for the
backup side, the restore side and retention alike.
Recovery: ``recovery.recover`` plans (``recoveryplan``, ``walpath``, ``targets``), builds the data
directory (``datadir``), serves WAL to ``restore_command`` (``walsource``, ``walfetch``) and
watches the server (``server``); ``drill`` is what the restore test does with the result. ``lsn``
holds the WAL position arithmetic both directions share; ``backup_manifest`` reads what
PostgreSQL wrote about a backup. Nothing here imports airflow.
"""

from __future__ import annotations
