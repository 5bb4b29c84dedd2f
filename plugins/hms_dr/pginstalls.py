"""Which PostgreSQL programs run against which server: one installation per major version.

A worker may have several PostgreSQL installations side by side (Debian's and PGDG's packages put
each in ``/usr/lib/postgresql/<major>/bin``). hms-dr finds them, in this order:

1. ``HMS_DR_PG_BIN_<major>`` (e.g. ``HMS_DR_PG_BIN_18=/opt/pg18/bin``): one bin directory per major;
2. ``HMS_DR_PG_BIN``: one bin directory whose major is read from its programs (older configurations);
3. every ``/usr/lib/postgresql/<major>/bin`` (``HMS_DR_PG_ROOT`` replaces that root);
4. the directory of ``pg_dump`` on ``PATH``.

Two rules choose among them:

- **client programs** (pg_dump, pg_restore, psql, pg_amcheck, pg_basebackup) talk to a running
  server: the server's own major, else the nearest newer one. Never older: pg_dump refuses a newer
  server and an older pg_basebackup cannot read its protocol.
- **data-directory programs** (postgres, pg_ctl, initdb, pg_checksums, pg_verifybackup,
  pg_combinebackup, pg_waldump) read files of one major's format: exactly that major.

When no installation fits, PreflightFailed says so in one line naming the versions on both sides.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hms_dr.errors import PreflightFailed, ToolFailed

PG_BIN_ENV_VAR = "HMS_DR_PG_BIN"
PG_ROOT_ENV_VAR = "HMS_DR_PG_ROOT"
DEFAULT_PG_ROOT = Path("/usr/lib/postgresql")
_MAJOR_BIN_VAR = re.compile(r"^HMS_DR_PG_BIN_(\d+)$")
# Programs whose --version tells an installation's version, in the order they are asked: a client
# package has pg_dump and psql; a server-only one still has postgres.
_VERSION_PROGRAMS = ("pg_dump", "psql", "pg_ctl", "postgres")
OLDEST_SUPPORTED_MAJOR = 13  # the runbook's "PostgreSQL 13+"
# What later majors add to a backup: incremental base backups (pg_basebackup --incremental,
# summarize_wal, pg_combinebackup) from 17; pg_verifybackup reading tar backups from 18.
INCREMENTAL_BACKUP_MAJOR = 17
TAR_VERIFY_MAJOR = 18


@dataclass(frozen=True, order=True)
class PgInstall:
    """One PostgreSQL installation: its major, full version and bin directory."""

    major: int
    version: str  # "18.6"
    bin_dir: Path

    def program(self, name: str) -> str:
        """Absolute path of one of its programs; PreflightFailed when this installation lacks it."""
        path = self.bin_dir / name
        if not path.exists():
            raise PreflightFailed(
                f"{name} is missing from PostgreSQL {self.version} in {self.bin_dir}",
                hint=f"install that major's client and server packages (postgresql-{self.major})",
            )
        return str(path)

    def describe(self) -> str:
        return f"PostgreSQL {self.version} ({self.bin_dir})"


def parse_tool_version(output: str) -> tuple[int, str]:
    """'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)' -> (15, '15.18')."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", output)
    if not match:
        raise ValueError(f"cannot read a PostgreSQL version from {output.strip()!r}")
    major = int(match.group(1))
    minor = match.group(2)
    return major, f"{major}.{minor}" if minor is not None else str(major)


def candidate_bin_dirs(environ: Mapping[str, str]) -> list[tuple[int | None, Path]]:
    """The bin directories to look at, each with the major it is said to hold (None: ask it)."""
    candidates: list[tuple[int | None, Path]] = []
    for name, value in sorted(environ.items()):
        match = _MAJOR_BIN_VAR.match(name)
        if match and value:
            candidates.append((int(match.group(1)), Path(value)))
    if environ.get(PG_BIN_ENV_VAR):
        candidates.append((None, Path(environ[PG_BIN_ENV_VAR])))
    root = Path(environ.get(PG_ROOT_ENV_VAR) or DEFAULT_PG_ROOT)
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.name.isdigit() and (child / "bin").is_dir():
                candidates.append((int(child.name), child / "bin"))
    on_path = shutil.which("pg_dump", path=environ.get("PATH"))
    if on_path:
        candidates.append((None, Path(on_path).resolve().parent))
    return candidates


def read_install(bin_dir: Path) -> PgInstall | None:
    """The installation in ``bin_dir`` as its programs report it; None when it holds none."""
    for name in _VERSION_PROGRAMS:
        program = bin_dir / name
        if not program.exists():
            continue
        try:
            done = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if done.returncode == 0:
            try:
                major, version = parse_tool_version(done.stdout)
            except ValueError:
                continue
            return PgInstall(major, version, bin_dir.absolute())
    return None


def discover_installs(environ: Mapping[str, str] | None = None) -> tuple[PgInstall, ...]:
    """Every installation found, the first one per major (in the order of the module docstring)."""
    environ = os.environ if environ is None else environ
    return _discover(tuple(sorted((k, v) for k, v in environ.items() if k.startswith("HMS_DR_PG") or k == "PATH")))


@cache
def _discover(environ_items: tuple[tuple[str, str], ...]) -> tuple[PgInstall, ...]:
    environ = dict(environ_items)
    found: dict[int, PgInstall] = {}
    seen: set[Path] = set()
    for said_major, bin_dir in candidate_bin_dirs(environ):
        resolved = bin_dir.resolve() if bin_dir.exists() else bin_dir
        if resolved in seen:
            continue
        seen.add(resolved)
        install = read_install(bin_dir)
        if install is None:
            continue
        if said_major is not None and install.major != said_major:
            raise PreflightFailed(
                f"HMS_DR_PG_BIN_{said_major}={bin_dir} holds PostgreSQL {install.version}, not {said_major}",
                hint=f"point HMS_DR_PG_BIN_{said_major} at a PostgreSQL {said_major} bin directory",
            )
        found.setdefault(install.major, install)
    return tuple(sorted(found.values()))


def choose_client_install(server_major: int, installs: tuple[PgInstall, ...], *, server: str) -> PgInstall:
    """The installation whose client programs serve a server of ``server_major``: the same major,
    else the nearest newer (a pure decision). ``server`` names the server in the refusal."""
    fitting = [install for install in installs if install.major >= server_major]
    if not fitting:
        raise PreflightFailed(
            f"{server} runs PostgreSQL {server_major} but the newest client tools here are "
            f"{_installed(installs)}: tools older than the server are never used",
            hint=f"install postgresql-client-{server_major} or set HMS_DR_PG_BIN_{server_major} to its bin directory",
        )
    return min(fitting)


def choose_data_install(major: int, installs: tuple[PgInstall, ...], *, data: str) -> PgInstall:
    """The installation whose server programs read ``data`` of ``major``: exactly that major."""
    for install in installs:
        if install.major == major:
            return install
    raise PreflightFailed(
        f"{data} is PostgreSQL {major} but the server programs here are {_installed(installs)}: "
        "a data directory is only ever opened by its own major",
        hint=f"install postgresql-{major} or set HMS_DR_PG_BIN_{major} to its bin directory",
    )


def client_install(server_major: int, *, server: str = "the server") -> PgInstall:
    """The client programs for a server of ``server_major`` on this worker."""
    return choose_client_install(server_major, discover_installs(), server=server)


def data_install(major: int, *, data: str = "the data directory") -> PgInstall:
    """The server programs for data of ``major`` on this worker."""
    return choose_data_install(major, discover_installs(), data=data)


def newest_install() -> PgInstall:
    """The newest installation here: what reads archives no server is known for (pg_restore --list)."""
    installs = discover_installs()
    if not installs:
        raise PreflightFailed(
            "no PostgreSQL programs found on this worker",
            hint=f"install the PostgreSQL client tools, or set HMS_DR_PG_BIN_<major> (or {PG_BIN_ENV_VAR})",
        )
    return installs[-1]


def data_dir_major(data_dir: Path) -> int:
    """The major a data directory (or an extracted base backup) belongs to, from its PG_VERSION."""
    try:
        text = (data_dir / "PG_VERSION").read_text().strip()
    except OSError as exc:
        raise ToolFailed("PG_VERSION", None, f"cannot read {data_dir / 'PG_VERSION'}: {exc.strerror}") from exc
    if not text.isdigit():
        raise ToolFailed("PG_VERSION", None, f"{data_dir / 'PG_VERSION'} holds {text!r}, not a major version")
    return int(text)


def server_version_major(server_version: str) -> int:
    """'18.6' or '15.18 (Debian ...)' -> the major."""
    match = re.match(r"\s*(\d+)", server_version)
    if not match:
        raise ValueError(f"cannot read a major version from {server_version!r}")
    return int(match.group(1))


def _installed(installs: tuple[PgInstall, ...]) -> str:
    return ", ".join(install.describe() for install in installs) or "none"
