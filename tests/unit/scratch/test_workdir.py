"""Work folders: one per restore command under staging, one private folder per run inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from hms_dr.errors import ParamInvalid
from hms_dr.scratch.workdir import WorkPurpose, work_folder


def test_each_command_has_its_folder_and_each_run_a_private_one(tmp_path: Path) -> None:
    run = work_folder(tmp_path / "staging", WorkPurpose.RESTORE_TEST, "hms_restore_test_20261124t020001z_a1b2c3")
    assert run == tmp_path / "staging" / "restore-test" / "hms_restore_test_20261124t020001z_a1b2c3"
    assert run.stat().st_mode & 0o777 == 0o700
    # A scratch cluster below runs as the server's OS user: it may walk through, not list.
    assert run.parent.stat().st_mode & 0o777 == 0o711
    assert work_folder(tmp_path / "staging", WorkPurpose.RESTORE_TEST, run.name) == run  # again: the same folder


@pytest.mark.parametrize(
    ("purpose", "name", "mode"),
    [
        (WorkPurpose.RESTORE_TEST, "restore-test", 0o711),
        (WorkPurpose.DR_RESTORE, "dr-restore", 0o711),
        (WorkPurpose.PITR, "pitr", 0o700),
    ],
)
def test_the_command_folders_keep_their_names_and_modes(
    tmp_path: Path, purpose: WorkPurpose, name: str, mode: int
) -> None:
    folder = work_folder(tmp_path, purpose)
    assert folder == tmp_path / name and folder.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("run", ["", ".", "..", "../elsewhere", "a/b"])
def test_a_run_name_that_is_not_one_folder_is_refused(tmp_path: Path, run: str) -> None:
    with pytest.raises(ParamInvalid, match="one plain path component"):
        work_folder(tmp_path, WorkPurpose.DR_RESTORE, run)
