"""Every value proven: content digests of each table and of the large objects, taken from the
archive the daily backup streams, recomputed on a restored database, and compared.

``ArchiveDigester`` runs ``archive_digest.py`` as a program of its own beside a dump, fed the same
bytes the verifier sees; for a directory-format dump, each upload worker feeds its files to a
``MemberDigester`` and ``directory_content`` puts the files' records together by the dump's
toc.dat (the same digests a custom archive of the same rows gives); ``digest_restored_database`` runs ``pg_dump --data-only`` of a restored
database into the same program; ``compare_content`` turns the two into one report row per table
(and one for the large objects). Both pg_dumps run with ``DUMP_SESSION_OPTIONS``, so equal rows
give byte-equal COPY text whichever server, time zone or database defaults they were read under.

What a digest proves, and what it does not, is written up in the README ("What the content digest
proves").
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hms_dr.errors import BackupVerificationFailed, HmsDrError
from hms_dr.logical import archive_digest
from hms_dr.names import split_relation_key
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import exact_table_pattern
from hms_dr.streams import FedProgram, Pipeline, Stage

DIGEST_PROGRAM = Path(archive_digest.__file__)
METHOD = archive_digest.METHOD
NO_ROWS: Mapping[str, Any] = archive_digest.RelationDigest().record()  # an empty table, or no large object

# Session settings that decide how a value is written as COPY text and that pg_dump leaves to the
# server's or the database's defaults (it sets DateStyle, IntervalStyle, extra_float_digits and
# search_path itself). Fixed for the production dump and for the restored database's, so a
# restore target with another time zone or bytea_output cannot make equal rows look different.
DUMP_SESSION_SETTINGS: Mapping[str, str] = {
    "TimeZone": "UTC",
    "bytea_output": "hex",
    "lc_monetary": "C",
}


def dump_session_options() -> str:
    """PGOPTIONS for a pg_dump whose archive is digested (the production dump and the restored one)."""
    return " ".join(f"-c {name}={value}" for name, value in DUMP_SESSION_SETTINGS.items())


def digest_argv() -> list[str]:
    # -S -s: the program needs only the standard library, nothing from site-packages or a user's site dir.
    return [sys.executable, "-S", "-s", str(DIGEST_PROGRAM)]


def digest_env() -> dict[str, str]:
    """The program's environment: bytes hash with SipHash's all-zero key (the method's), no other
    Python setting of the caller's."""
    return {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


@dataclass(frozen=True)
class ContentDigests:
    """What an archive holds: (rows, digest) per (schema, table), and of its large objects."""

    method: str
    encoding: str | None
    tables: Mapping[tuple[str, str], Mapping[str, Any]]
    large_objects: Mapping[str, Any] | None

    @classmethod
    def from_program_output(cls, output: bytes) -> ContentDigests:
        return cls.from_json(json.loads(output))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContentDigests:
        """From the program's JSON object (or ``to_json``'s: the same shape)."""
        return cls(
            method=data["method"],
            encoding=data.get("encoding"),
            tables={(schema, name): record for schema, name, record in data["tables"]},
            large_objects=data.get("large_objects"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "encoding": self.encoding,
            "tables": [[schema, name, dict(record)] for (schema, name), record in sorted(self.tables.items())],
            "large_objects": dict(self.large_objects) if self.large_objects is not None else None,
        }

    def table(self, schema: str, name: str) -> Mapping[str, Any]:
        """A table's (rows, digest); a table the archive has no data block for holds no rows."""
        return self.tables.get((schema, name)) or NO_ROWS


class ArchiveDigester:
    """``archive_digest.py`` fed chunk by chunk from a dump in progress (see StreamVerifier)."""

    def __init__(self) -> None:
        self._program = FedProgram(digest_argv(), "archive_digest", env=digest_env())

    def feed(self, chunk: bytes) -> None:
        self._program.feed(chunk)

    def finish(self, label: str) -> ContentDigests:
        if self._program.finish() != 0:
            raise BackupVerificationFailed(
                f"{label}: the content digest could not read the archive: {self._program.last_error_line()}"
            )
        return ContentDigests.from_program_output(self._program.stdout)

    def kill(self) -> None:
        self._program.kill()


class MemberDigester:
    """``archive_digest.py --members`` fed the files of a directory dump one after the other
    (one per upload worker, so the hashing of each worker's files has a core of its own)."""

    def __init__(self) -> None:
        self._program = FedProgram([*digest_argv(), "--members"], "archive_digest-members", env=digest_env())

    def begin(self, name: str, size_bytes: int) -> None:
        """The next ``size_bytes`` fed are the file ``name`` (pg_dump's names hold no tab or newline)."""
        self._program.feed(f"{name}\t{size_bytes}\n".encode())

    def feed(self, chunk: bytes) -> None:
        self._program.feed(chunk)

    def finish(self, label: str) -> dict[str, Mapping[str, Any]]:
        if self._program.finish() != 0:
            raise BackupVerificationFailed(
                f"{label}: the content digest could not read the dump's files: {self._program.last_error_line()}"
            )
        members: dict[str, Mapping[str, Any]] = json.loads(self._program.stdout)["members"]
        return members

    def kill(self) -> None:
        self._program.kill()


def directory_content(
    toc: archive_digest.DirectoryToc,
    members: Mapping[str, Mapping[str, Any]],
    large_object_listings: Mapping[str, bytes],
    label: str,
) -> ContentDigests:
    """The content digests of a directory dump: each table file's record under its table (by
    toc.dat), the large objects' hashes added up as the custom archive's reader adds them.
    BackupVerificationFailed when a file the table of contents names was not digested."""
    missing = [name for name in toc.table_files if name not in members]
    large_objects = archive_digest.LargeObjectsDigest()
    for listing in large_object_listings.values():
        for name, oid in archive_digest.large_object_files(listing).items():
            record = members.get(name)
            if record is None or record.get("oid") != oid:
                missing.append(name)
                continue
            large_objects.add(bytes.fromhex(str(record["hash"])))
    if missing:
        raise BackupVerificationFailed(
            f"{label}: {len(missing)} file(s) the dump's table of contents names were not digested: "
            + ", ".join(sorted(missing)[:5])
        )
    return ContentDigests(
        method=METHOD,
        encoding=toc.encoding,
        tables={table: members[name] for name, table in toc.table_files.items()},
        large_objects=large_objects.record() if large_object_listings else None,
    )


class RestoredDigest:
    """``pg_dump --data-only -Fc | archive_digest.py`` of a restored database, running in the
    background while the other checks run; ``result()`` waits for it. ``tables`` None: the whole
    database (its large objects when ``large_objects``) but the rows of the tables ``without``
    names; else only those tables."""

    def __init__(
        self,
        env: Mapping[str, str],
        pg: PgInstall,
        *,
        tables: Sequence[tuple[str, str]] | None,
        large_objects: bool,
        without: Sequence[tuple[str, str]] = (),
    ) -> None:
        argv = [pg.program("pg_dump"), "--format=c", "--compress=0", "--data-only", "--no-password"]
        if tables is None:
            argv.append("--blobs" if large_objects else "--no-blobs")
            argv += [f"--exclude-table-data={exact_table_pattern(schema, name)}" for schema, name in without]
        else:
            # Exact names: inside double quotes a pattern's wildcards are plain characters.
            argv += [f"--table={exact_table_pattern(schema, name)}" for schema, name in tables]
        self._pipeline = Pipeline(
            [Stage("pg_dump (content digest)", argv, env=env), Stage("archive_digest", digest_argv(), env=digest_env())]
        )
        self._output: list[bytes] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._read, args=(self._pipeline.output,), name="restored-digest", daemon=True
        )
        self._thread.start()

    def _read(self, output: IO[bytes]) -> None:
        try:
            self._output.append(output.read())
        except BaseException as exc:  # re-raised by result()
            self._error.append(exc)

    def result(self) -> ContentDigests:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return ContentDigests.from_program_output(self._output[0])

    def cancel(self) -> None:
        self._pipeline.abort()
        self._thread.join(timeout=30)


@dataclass(frozen=True)
class DigestTaken:
    """The restored database's content digests, already taken (as it was restored: see
    ``as_restored``), or why they could not be."""

    digests: ContentDigests | None
    error: str | None = None
    while_restoring: int = 0  # tables whose digest started before the restore had ended

    def to_json(self) -> dict[str, Any]:
        return {
            "digests": self.digests.to_json() if self.digests else None,
            "error": self.error,
            "while_restoring": self.while_restoring,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DigestTaken:
        digests = data.get("digests")
        return cls(
            ContentDigests.from_json(digests) if digests else None,
            data.get("error"),
            int(data.get("while_restoring") or 0),
        )


class RestoredContent:
    """The content checks of one restored database: its digest (being taken in the background,
    or taken already), and the report rows comparing it with the baselines."""

    def __init__(
        self, baselines: Mapping[str, Any], digest: RestoredDigest | None = None, *, taken: DigestTaken | None = None
    ) -> None:
        self._baselines = baselines
        self._digest = digest
        self._taken = taken

    def rows(self) -> list[dict[str, Any]]:
        if self._taken is not None:
            if self._taken.digests is None:
                return compare_content(self._baselines, None, error=self._taken.error or "no digest was taken")
            return compare_content(self._baselines, self._taken.digests)
        if self._digest is None:
            return []
        try:
            observed = self._digest.result()
        except HmsDrError as exc:
            return compare_content(self._baselines, None, error=exc.message)
        return compare_content(self._baselines, observed)


def tables_to_digest(baselines: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bool] | None:
    """Which of the restored database's tables the baselines hold digests of, and whether its
    large objects too (baselines with large objects are those of a whole database); None when the
    baselines hold no content digests (sets taken before they existed): nothing to digest.
    BackupVerificationFailed when they were taken with a method this version does not compute."""
    recorded = baselines.get("content_digest")
    if not recorded:
        return None
    if recorded.get("method") != METHOD:
        raise BackupVerificationFailed(
            f"the set's content digests were taken with method {recorded.get('method')!r};"
            f" this version computes {METHOD!r}"
        )
    tables = [
        split_relation_key(name) for name, record in sorted(baselines.get("tables", {}).items()) if "content" in record
    ]
    return tables, baselines.get("large_objects") is not None


@contextmanager
def digesting_restored(
    conninfo: Mapping[str, str], baselines: Mapping[str, Any], pg: PgInstall, *, taken: DigestTaken | None = None
) -> Iterator[RestoredContent]:
    """Digest the restored database at ``conninfo`` while the block runs; nothing outlives it.
    ``taken``: the digests were taken already, as the database was restored; only compared here.

    Baselines without content digests (sets taken before they existed) check nothing here.
    Baselines with large objects are those of a whole database, dumped whole; otherwise only the
    baseline's tables are dumped (a DR restore of a few tables into a staging schema).
    """
    wanted = tables_to_digest(baselines)
    if wanted is None:
        yield RestoredContent(baselines)
        return
    if taken is not None:
        yield RestoredContent(baselines, taken=taken)
        return
    listed, whole = wanted
    tables = None if whole else listed
    if tables == []:
        yield RestoredContent(baselines)
        return
    encoding = baselines["content_digest"].get("encoding")
    digest = RestoredDigest(restored_dump_env(conninfo, encoding), pg, tables=tables, large_objects=whole)
    try:
        yield RestoredContent(baselines, digest)
    finally:
        digest.cancel()


def restored_dump_env(conninfo: Mapping[str, str], encoding: str | None) -> dict[str, str]:
    """The environment of the restored database's pg_dump: libpq settings from a connection's
    key=value parameters (the password never in argv), the dump session settings, and the client
    encoding the production archive was written in."""
    names = {
        "host": "PGHOST",
        "hostaddr": "PGHOSTADDR",
        "port": "PGPORT",
        "user": "PGUSER",
        "dbname": "PGDATABASE",
        "password": "PGPASSWORD",
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "sslcert": "PGSSLCERT",
        "sslkey": "PGSSLKEY",
        "connect_timeout": "PGCONNECT_TIMEOUT",
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update({names[key]: str(value) for key, value in conninfo.items() if key in names and value is not None})
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGOPTIONS"] = dump_session_options()
    if encoding:
        env["PGCLIENTENCODING"] = encoding
    return env


def record_content(baselines: dict[str, Any], whole: ContentDigests) -> None:
    """Put the whole-database dump's digests into the baselines: each table's ``content`` (and its
    ``rows``, counted by the digest), the large objects', and how they were taken."""
    for name, record in baselines["tables"].items():
        schema, table = split_relation_key(name)
        content = dict(whole.table(schema, table))
        record["content"] = content
        record["rows"] = content["rows"]
    baselines["large_objects"] = dict(whole.large_objects or NO_ROWS)
    baselines["content_digest"] = {
        "method": whole.method,
        "encoding": whole.encoding,
        "session_settings": dict(DUMP_SESSION_SETTINGS),
    }


def compare_content(
    expected: Mapping[str, Any], observed: ContentDigests | None, *, error: str | None = None
) -> list[dict[str, Any]]:
    """One report row per table with a recorded digest (and one for the large objects), in the
    restore checks' row format. ``expected`` is the restored baselines (tables renamed to where
    they were restored); ``observed`` None with ``error`` when the digest could not be taken."""
    rows: list[dict[str, Any]] = []
    for name, record in sorted(expected.get("tables", {}).items()):
        want = record.get("content")
        if want is None:
            continue
        schema, table = split_relation_key(name)
        if observed is None:
            rows.append(
                _row("table_content", name, want, None, False, f"table {name} content could not be digested: {error}")
            )
            continue
        have = observed.tables.get((schema, table))
        rows.append(_table_row(name, want, have))
    want_objects = expected.get("large_objects")
    if want_objects is not None:
        if observed is None:
            rows.append(
                _row(
                    "large_objects",
                    "large objects",
                    want_objects,
                    None,
                    False,
                    f"large objects could not be digested: {error}",
                )
            )
        else:
            rows.append(_large_objects_row(want_objects, observed.large_objects))
    return rows


def _table_row(name: str, want: Mapping[str, Any], have: Mapping[str, Any] | None) -> dict[str, Any]:
    if have is None and want["rows"] == 0:
        have = NO_ROWS  # a partitioned table's parent has no data block of its own: its rows are its partitions'
    if have is None:
        return _row(
            "table_content",
            name,
            want,
            None,
            False,
            f"table {name} has no data in the restored database (baseline {want['rows']} rows)",
        )
    if have["rows"] != want["rows"]:
        return _row(
            "table_content",
            name,
            want,
            dict(have),
            False,
            f"table {name} has {have['rows']} rows, baseline {want['rows']} (content digest)",
        )
    if have["digest"] != want["digest"]:
        return _row(
            "table_content",
            name,
            want,
            dict(have),
            False,
            f"table {name} content differs from the backup: {have['rows']} rows as in the baseline, but "
            f"at least one value differs (digest {have['digest'][:12]}, baseline {want['digest'][:12]})",
        )
    return _row(
        "table_content",
        name,
        want,
        dict(have),
        True,
        f"table {name}: every value of its {have['rows']} rows as in the backup (digest {have['digest'][:12]})",
    )


def _large_objects_row(want: Mapping[str, Any], have: Mapping[str, Any] | None) -> dict[str, Any]:
    have = have or NO_ROWS
    if have["rows"] != want["rows"]:
        return _row(
            "large_objects",
            "large objects",
            want,
            dict(have),
            False,
            f"the restored database has {have['rows']} large objects, baseline {want['rows']}",
        )
    if have["digest"] != want["digest"]:
        return _row(
            "large_objects",
            "large objects",
            want,
            dict(have),
            False,
            f"large objects differ from the backup: {have['rows']} as in the baseline, but the contents of"
            f" at least one differ (digest {have['digest'][:12]}, baseline {want['digest'][:12]})",
        )
    return _row(
        "large_objects",
        "large objects",
        want,
        dict(have),
        True,
        f"{have['rows']} large objects, every byte as in the backup (digest {have['digest'][:12]})",
    )


def _row(check: str, target: str, expected: Any, observed: Any, passed: bool, message: str) -> dict[str, Any]:
    return {
        "check": check,
        "target": target,
        "expected": expected,
        "observed": observed,
        "passed": passed,
        "message": message,
        "data_docs_page": None,
    }
