"""Work folders: where a restore command keeps its short-lived private files under staging.

One folder per command (``<staging>/restore-test``, ``dr-restore``, ``pitr``) and, inside it, one
per run. Decrypted dumps, fetched WAL, gpg homes and reports live there; each caller removes its
run folder when its step is done.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from hms_dr.errors import ParamInvalid


class WorkPurpose(Enum):
    """The restore command a work folder serves; its value is the folder's name under staging."""

    RESTORE_TEST = "restore-test"  # the restore test's fetch and reports, the drill's cluster
    DR_RESTORE = "dr-restore"  # a DR restore's fetch, WAL and reports, its scratch cluster by default
    PITR = "pitr"  # hms_dr_pitr's WAL source (its cluster goes where the operator says)
    LOGICAL_DUMP = "logical-dump"  # a directory-format daily dump, staged until its files are stored

    @property
    def folder_mode(self) -> int:
        # o+x where a scratch cluster may live below: its server runs as another OS user and
        # must walk through (it cannot list the folder). PITR's cluster is never under it.
        return 0o700 if self in (WorkPurpose.PITR, WorkPurpose.LOGICAL_DUMP) else 0o711


def work_folder(staging_dir: Path, purpose: WorkPurpose, run: str | None = None) -> Path:
    """``<staging_dir>/<purpose>`` (or its ``<run>`` folder, 0700), created if missing."""
    folder = staging_dir / purpose.value
    folder.mkdir(mode=purpose.folder_mode, parents=True, exist_ok=True)
    if run is None:
        return folder
    if not run or "/" in run or run in (".", ".."):
        raise ParamInvalid(f"a work folder's run name must be one plain path component, got {run!r}")
    run_folder = folder / run
    run_folder.mkdir(mode=0o700, exist_ok=True)
    return run_folder
