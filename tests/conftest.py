"""Shared test setup: the engine package on sys.path, and the guard that the suite reads nothing
beside the repository (tests/repo_boundary.py)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = REPO_ROOT / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))
TESTS = REPO_ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import repo_boundary  # noqa: E402  (needs the sys.path entry above)

BOUNDARY = repo_boundary.boundary_for(REPO_ROOT)
repo_boundary.install(BOUNDARY)
