"""The suite reads nothing beside the repository (a user's clone has no folder next to it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import repo_boundary

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_read_beside_the_clone_is_refused_in_the_test_process(monkeypatch):
    assert repo_boundary.installed is not None, "tests/conftest.py installs the guard in every test process"
    BOUNDARY = repo_boundary.installed
    sibling = os.path.join(os.path.dirname(BOUNDARY.repo_root), "next-door")
    monkeypatch.setattr(BOUNDARY, "siblings", BOUNDARY.siblings | {sibling})
    with pytest.raises(PermissionError, match="beside the repository"):
        open(os.path.join(sibling, "schemas", "compose-spec.json"), encoding="utf-8")  # noqa: SIM115 (the open itself must raise)
    with pytest.raises(PermissionError, match="beside the repository"):
        os.listdir(sibling)


def test_the_repository_the_virtualenv_and_new_temporary_paths_stay_readable(tmp_path):
    assert (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (tmp_path / "made-by-this-test").write_text("x", encoding="utf-8")
    assert (tmp_path / "made-by-this-test").read_text(encoding="utf-8") == "x"
    assert os.listdir(os.path.dirname(os.__file__))


def test_the_rule_follows_symlinks_and_spares_what_the_run_made(tmp_path):
    parent = tmp_path / "parent"
    repo, next_door, venv = parent / "repo", parent / "next-door", parent / "venv"
    for folder in (repo, next_door, venv):
        folder.mkdir(parents=True)
    (repo / "link-out").symlink_to(next_door)
    boundary = repo_boundary.Boundary(str(repo), siblings={str(next_door), str(venv)}, allowed=[str(venv)])
    assert boundary.refuses(str(next_door / "schemas" / "compose-spec.json"))
    assert boundary.refuses(str(repo / "link-out" / "x"))  # a symlink out of the clone
    assert boundary.refuses(str(repo / ".." / "next-door"))
    assert not boundary.refuses(str(venv / "lib" / "x.py"))  # the virtualenv, even beside the clone
    assert not boundary.refuses(str(parent / "made-during-the-run"))  # not a sibling at session start
    assert not boundary.refuses(str(repo / "tests" / "x"))
    assert not boundary.refuses("/usr/lib/postgresql")


def test_no_tracked_file_names_a_folder_beside_the_clone():
    """The static half of the guard: subprocesses escape the audit hook, so no test, fixture,
    engine module, Makefile or CI script may even name a folder beside the clone."""
    found = subprocess.run(
        [
            "git",
            "grep",
            "-nE",
            r"\.\./shared|parent ?/ ?\"shared\"|parents\[[0-9]+\] ?/ ?\"shared\"",
            "--",
            "tests",
            "plugins",
            "dags",
            "bench",
            "Makefile",
            ".ci",
            ":!tests/unit/test_repo_boundary.py",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, f"names a folder beside the clone:\n{found.stdout}"
