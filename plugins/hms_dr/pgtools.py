"""PostgreSQL client programs (pg_dump, pg_restore) and how to reach a server.

Each tool has a pure ``*_argv`` builder, so what runs is testable without PostgreSQL. Passwords
travel in the child's environment (libpq's PGPASSWORD), never in argv, where ``ps`` shows them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from hms_dr.errors import PreflightFailed, ToolFailed

PG_BIN_ENV_VAR = "HMS_DR_PG_BIN"
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a PostgreSQL database is and who logs in; the password never shows in repr."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None

    def libpq_env(self) -> dict[str, str]:
        """Environment for a client program; merged over a copy of os.environ by the caller."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        # Tools must never fall back to a password prompt on a headless worker.
        env["PGCONNECT_TIMEOUT"] = env.get("PGCONNECT_TIMEOUT", "10")
        return env

    def psycopg_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": 10,
            "application_name": "hms-dr",
        }
        if self.password is not None:
            kwargs["password"] = self.password
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs

    def libpq_dsn(self) -> str:
        """A libpq key=value string (password included: hand it to a client, never to a log)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**{k: v for k, v in self.psycopg_kwargs().items() if k != "application_name"})  # type: ignore[arg-type]

    def with_database(self, dbname: str) -> ConnectionInfo:
        return ConnectionInfo(self.host, self.port, self.user, dbname, self.password, self.sslmode)

    def with_endpoint(self, host: str, port: int) -> ConnectionInfo:
        """The same login on another server (a recovered copy of this cluster)."""
        return ConnectionInfo(host, port, self.user, self.dbname, self.password, self.sslmode)

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


def pg_bin_dir() -> Path | None:
    """The PostgreSQL bin directory: $HMS_DR_PG_BIN, the Debian default, else None (use PATH)."""
    configured = os.environ.get(PG_BIN_ENV_VAR)
    if configured:
        return Path(configured)
    return DEFAULT_PG_BIN if DEFAULT_PG_BIN.is_dir() else None


def tool_path(tool: str) -> str:
    """Absolute path of a PostgreSQL client program; PreflightFailed if it is not installed."""
    bin_dir = pg_bin_dir()
    if bin_dir is not None and (bin_dir / tool).exists():
        return str(bin_dir / tool)
    found = shutil.which(tool)
    if found is None:
        raise PreflightFailed(
            f"{tool} not found in {bin_dir or 'PATH'}",
            hint=f"install the PostgreSQL client tools or set {PG_BIN_ENV_VAR}",
        )
    return found


def tool_env(conn: ConnectionInfo) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(conn.libpq_env())
    return env


def parse_tool_version(output: str) -> tuple[int, str]:
    """'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)' -> (15, '15.18')."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", output)
    if not match:
        raise ValueError(f"cannot read a PostgreSQL version from {output.strip()!r}")
    major = int(match.group(1))
    minor = match.group(2)
    return major, f"{major}.{minor}" if minor is not None else str(major)


def tool_version(tool: str) -> tuple[int, str]:
    done = subprocess.run([tool_path(tool), "--version"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ToolFailed(tool, done.returncode, last_line(done.stderr))
    return parse_tool_version(done.stdout)


def pg_dump_argv(
    *,
    snapshot: str | None,
    archive_format: str,
    compress_level: int,
    schema_only: bool = False,
    data_only: bool = False,
    tables: Sequence[str] = (),
    schemas: Sequence[str] = (),
    large_objects: bool = True,
) -> list[str]:
    """pg_dump writing to stdout; the connection comes from the environment (tool_env)."""
    if schema_only and data_only:
        raise ValueError("schema_only and data_only exclude each other")
    if archive_format not in ("c", "p"):
        raise ValueError(f"unsupported pg_dump format {archive_format!r} (c or p)")
    argv = [tool_path("pg_dump"), f"--format={archive_format}", f"--compress={compress_level}", "--no-password"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    if schema_only:
        argv.append("--schema-only")
    elif data_only:
        argv.append("--data-only")
    elif large_objects:
        argv.append("--blobs")  # PostgreSQL 16 renamed it --large-objects and keeps --blobs
    argv += [f"--schema={name}" for name in schemas]
    argv += [f"--table={name}" for name in tables]
    return argv


def pg_restore_list_argv() -> list[str]:
    """pg_restore --list reading an archive from stdin: proves the table of contents is readable."""
    return [tool_path("pg_restore"), "--list"]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def parse_restore_list(listing: str) -> list[tuple[str, str, str]]:
    """Entries of `pg_restore --list` as (description, schema, name), e.g. ('TABLE DATA', 'public', 'patients')."""
    entries: list[tuple[str, str, str]] = []
    pattern = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.+)$")
    descriptions = (
        "TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT", "MATERIALIZED VIEW DATA",
        "DEFAULT ACL", "BLOBS", "BLOB", "TABLE", "VIEW", "INDEX", "CONSTRAINT", "SEQUENCE", "SCHEMA",
        "TYPE", "FUNCTION", "TRIGGER", "COMMENT", "ACL", "DEFAULT", "EXTENSION", "DATABASE",
    )
    for line in listing.splitlines():
        match = pattern.match(line.strip())
        if not match:
            continue
        rest = match.group("rest")
        for description in descriptions:
            if rest.startswith(description + " "):
                words = rest[len(description) + 1:].split()
                schema = words[0] if words else ""
                name = words[1] if len(words) > 1 else ""
                entries.append((description, schema, name))
                break
    return entries
