"""Physical backups of the whole cluster: weekly base backups, and point-in-time recovery from them.

Base backups: ``basebackup.take_base_backup`` runs the steps (``preflight``, ``pgbasebackup``,
``verifybackup``, ``staging`` into the store, publish) and ``basebackup.expire_base_backups``
keeps the newest few. ``lsn`` holds the WAL position arithmetic both directions share;
``backup_manifest`` reads what PostgreSQL wrote about a backup. Nothing here imports airflow.
"""

from __future__ import annotations
