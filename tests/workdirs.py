"""Where the tests keep their servers' state: under the repository when the PostgreSQL server can
reach it, else in a folder of the system's temporary directory named after the clone.

Run as root, the test servers run as the postgres OS user, which must traverse every directory
above a data directory. A clone in a bare `mktemp -d` (mode 0700, owned by root) is not
traversable, and the suite must pass there too: the state then goes to
<tmp>/hms-dr-test-<digest of the clone's path>/.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import cache
from pathlib import Path

from hms_dr.errors import PreflightFailed
from hms_dr.server_user import ensure_reachable_by_server

REPO_ROOT = Path(__file__).resolve().parents[1]


@cache
def state_root() -> Path:
    inside = REPO_ROOT / ".sandbox-test"
    try:
        ensure_reachable_by_server(inside)
        return inside
    except PreflightFailed:
        outside = outside_state_root()
        outside.mkdir(exist_ok=True)
        os.chmod(outside, 0o711)  # the server user walks through it; nobody else lists it
        return outside


def outside_state_root() -> Path:
    """The folder of the system's temporary directory this clone's tests use when the server
    cannot reach the clone (`make clean` removes it too)."""
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hms-dr-test-{digest}"


if __name__ == "__main__":
    print(outside_state_root())
