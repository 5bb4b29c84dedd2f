"""PostgreSQL client programs (pg_dump, pg_restore) and how to reach a server.

Each tool has a pure ``*_argv`` builder, so what runs is testable without PostgreSQL. Passwords
travel in the child's environment (libpq's PGPASSWORD), never in argv, where ``ps`` shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from hms_dr.pginstalls import PgInstall


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


def tool_env(conn: ConnectionInfo) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(conn.libpq_env())
    return env


def pg_dump_argv(
    pg: PgInstall,
    *,
    snapshot: str | None,
    archive_format: str,
    compress_level: int,
    schema_only: bool = False,
    data_only: bool = False,
    tables: Sequence[str] = (),
    schemas: Sequence[str] = (),
    large_objects: bool = True,
    directory: str | None = None,
    jobs: int = 1,
) -> list[str]:
    """pg_dump writing to stdout, or a directory-format dump into ``directory`` with ``jobs``
    processes; the connection comes from the environment (tool_env)."""
    if schema_only and data_only:
        raise ValueError("schema_only and data_only exclude each other")
    if archive_format not in ("c", "p", "d"):
        raise ValueError(f"unsupported pg_dump format {archive_format!r} (c, p or d)")
    if (archive_format == "d") != (directory is not None):
        raise ValueError("a directory-format dump, and only one, writes into a directory")
    argv = [pg.program("pg_dump"), f"--format={archive_format}", f"--compress={compress_level}", "--no-password"]
    if directory is not None:
        argv += [f"--file={directory}", f"--jobs={jobs}"]
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


def pg_restore_list_argv(pg: PgInstall) -> list[str]:
    """pg_restore --list reading an archive from stdin: proves the table of contents is readable."""
    return [pg.program("pg_restore"), "--list"]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def exact_table_pattern(schema: str, name: str) -> str:
    """A pg_dump --table pattern matching exactly this table: quoted parts are neither folded to
    lower case nor read as wildcards, whatever the name holds (a space, a dot, a '*')."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


# What pg_restore --list prints after "dumpId; tableoid oid ", longest first: a description may
# be several words and is matched whole.
RESTORE_LIST_DESCRIPTIONS = tuple(
    sorted(
        (
            "TABLE DATA",
            "SEQUENCE SET",
            "SEQUENCE OWNED BY",
            "FK CONSTRAINT",
            "CHECK CONSTRAINT",
            "MATERIALIZED VIEW DATA",
            "MATERIALIZED VIEW",
            "TABLE ATTACH",
            "INDEX ATTACH",
            "DEFAULT ACL",
            "FOREIGN TABLE",
            "EVENT TRIGGER",
            "BLOBS",
            "BLOB",
            "LARGE OBJECT",
            "TABLE",
            "VIEW",
            "INDEX",
            "CONSTRAINT",
            "SEQUENCE",
            "SCHEMA",
            "TYPE",
            "DOMAIN",
            "FUNCTION",
            "PROCEDURE",
            "AGGREGATE",
            "TRIGGER",
            "RULE",
            "POLICY",
            "COMMENT",
            "ACL",
            "DEFAULT",
            "EXTENSION",
            "DATABASE",
            "COLLATION",
            "CONVERSION",
            "PUBLICATION",
            "SUBSCRIPTION",
            "STATISTICS",
        ),
        key=len,
        reverse=True,
    )
)
_RESTORE_LIST_LINE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.+)$")


def parse_restore_list(listing: str, known: Collection[tuple[str, str]] = ()) -> list[tuple[str, str, str]]:
    """Entries of `pg_restore --list` as (description, schema, name), e.g. ('TABLE DATA', 'public', 'patients').

    pg_restore prints each entry's schema, name and owner unquoted, separated by single spaces,
    so a name with a space in it cannot be told from the words around it by splitting. The
    (schema, name) pairs in ``known`` (the tables the caller expects) are matched against the
    text whole, the longest first; any other entry is read as schema = the first word, name = the
    words before the last (the owner): for a constraint or trigger that is pg_dump's tag, "table
    constraint". pg_restore writes a newline in a name as a space; so does the match.
    """
    candidates = {f"{_listed(schema)} {_listed(name)}": (schema, name) for schema, name in known}
    entries: list[tuple[str, str, str]] = []
    for line in listing.splitlines():
        match = _RESTORE_LIST_LINE.match(line.strip())
        if not match:
            continue
        rest = match.group("rest")
        description = next((d for d in RESTORE_LIST_DESCRIPTIONS if rest.startswith(d + " ")), None)
        if description is None:
            continue
        tag = rest[len(description) + 1 :]
        entries.append((description, *_schema_and_name(tag, candidates)))
    return entries


def _listed(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _schema_and_name(tag: str, candidates: dict[str, tuple[str, str]]) -> tuple[str, str]:
    if candidates:
        # Every prefix of the tag that ends before a space (the owner follows), longest first.
        for end in sorted((i for i, c in enumerate(tag) if c == " "), reverse=True):
            found = candidates.get(tag[:end])
            if found is not None:
                return found
        if tag in candidates:  # an entry printed without an owner
            return candidates[tag]
    words = tag.split(" ")
    return words[0], " ".join(words[1:-1]) if len(words) > 2 else (words[1] if len(words) > 1 else "")
