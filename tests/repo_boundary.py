"""The suite needs nothing beside the repository: a user's clone has no folder next to it.

An audit hook (PEP 578) refuses, in every test process, any read of a path that sits beside the
clone -- under the clone's parent folder but outside the repository -- and that existed before the
session started. What the tests make themselves during the run (temporary directories, which on
some machines are siblings of the clone) stays readable, and so does the virtualenv even when it
is a symlink to one beside the clone. Paths elsewhere (the system's tools and libraries) are not
"beside the clone" and are allowed.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# The audit events that read a path (open covers io.open, os.open and Path.read_*).
READ_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "glob.glob"})


@dataclass
class Boundary:
    repo_root: str
    siblings: set[str]  # absolute paths beside the clone at session start
    allowed: list[str] = field(default_factory=list)  # roots readable even when beside the clone

    def refuses(self, path: str) -> bool:
        for candidate in {os.path.abspath(path), os.path.realpath(path)}:
            if _under(candidate, self.repo_root) or any(_under(candidate, root) for root in self.allowed):
                continue
            if any(_under(candidate, sibling) for sibling in self.siblings):
                return True
        return False


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def boundary_for(repo_root: Path) -> Boundary:
    root = os.path.abspath(repo_root)
    parent = os.path.dirname(root)
    siblings = {os.path.join(parent, name) for name in os.listdir(parent)} - {root}
    # pytest's own temporary root may predate the session (it keeps the last few runs).
    pytest_temp = os.path.join(tempfile.gettempdir(), f"pytest-of-{getpass.getuser()}")
    allowed = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, root, pytest_temp)})
    return Boundary(repo_root=root, siblings=siblings, allowed=allowed)


installed: Boundary | None = None  # the boundary this process enforces


def install(boundary: Boundary) -> None:
    global installed
    installed = boundary

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event not in READ_EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, str) and path and boundary.refuses(path):
            raise PermissionError(
                f"a test read {path}, beside the repository: the suite must need nothing outside "
                f"{boundary.repo_root} but the temporary directories it makes"
            )

    sys.addaudithook(hook)
