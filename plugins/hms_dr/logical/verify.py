"""Verifying a dump while it streams past, before it is encrypted.

Custom-format archives are fed to ``pg_restore --list`` (a directory dump's toc.dat is listed
from its staging directory, ``check_listing`` alike), which must read the table of contents
and list the data of every table the baselines hold, and to the content digest (``content``);
plain SQL must end with pg_dump's completion line. The plain bytes are hashed on the way (``plain_sha256`` in the manifest).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hms_dr.errors import BackupVerificationFailed
from hms_dr.logical.content import ArchiveDigester, ContentDigests
from hms_dr.names import split_relation_key
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import parse_restore_list, pg_restore_list_argv
from hms_dr.streams import FedProgram

PLAIN_DUMP_END_MARK = b"-- PostgreSQL database dump complete"


@dataclass
class StreamVerifier:
    """Reads the plain archive as it streams past: pg_restore --list and the content digest for
    custom archives, the closing line for plain SQL."""

    archive_format: str
    pg: PgInstall  # the pg_restore of the pg_dump that wrote the archive
    digest_content: bool = False
    lister: FedProgram | None = None
    tail: bytes = b""
    plain_hash: Any = field(default_factory=hashlib.sha256)
    plain_size: int = 0
    digester: ArchiveDigester | None = None
    content: ContentDigests | None = None

    def start(self) -> None:
        if self.archive_format != "c":
            return
        if self.digest_content:
            self.digester = ArchiveDigester()
        # pg_restore --list stops reading once it has the table of contents: fine, its exit code says.
        self.lister = FedProgram(pg_restore_list_argv(self.pg), "pg_restore-list")

    def feed(self, chunk: bytes) -> None:
        self.plain_hash.update(chunk)
        self.plain_size += len(chunk)
        self.tail = (self.tail + chunk)[-4096:]
        if self.digester is not None:
            self.digester.feed(chunk)
        if self.lister is not None:
            self.lister.feed(chunk)

    def finish(self, expect_table_data: tuple[str, ...], label: str) -> dict[str, Any]:
        """Raise unless the dump is complete; ``expect_table_data``: schema.name keys of the tables
        whose TABLE DATA entry must be listed (tables that hold rows: not partitioned parents,
        and materialized views, listed as MATERIALIZED VIEW DATA, are not among them)."""
        if self.lister is None:
            if self.plain_size == 0 or PLAIN_DUMP_END_MARK not in self.tail:
                raise BackupVerificationFailed(
                    f"{label}: the plain SQL dump does not end with pg_dump's completion line"
                )
            return {"check": "plain dump completion line", "plain_size_bytes": self.plain_size}
        if self.lister.finish() != 0:
            raise BackupVerificationFailed(f"{label}: pg_restore --list failed: {self.lister.last_error_line()}")
        if self.digester is not None:
            self.content = self.digester.finish(label)
        verification = check_listing(self.lister.stdout, expect_table_data, label)
        if self.content is not None:
            verification.update(check="pg_restore --list; content digest", tables_digested=len(self.content.tables))
        return verification

    def kill(self) -> None:
        if self.digester is not None:
            self.digester.kill()
        if self.lister is not None:
            self.lister.kill()


def check_listing(listing: bytes, expect_table_data: tuple[str, ...], label: str) -> dict[str, Any]:
    """Raise unless ``pg_restore --list``'s output lists the TABLE DATA of every table in
    ``expect_table_data``; the verification record otherwise (custom and directory dumps alike)."""
    # Matched as (schema, name) pairs: names may hold spaces and dots (see parse_restore_list).
    expected = {table: split_relation_key(table) for table in expect_table_data}
    entries = parse_restore_list(listing.decode("utf-8", "replace"), known=set(expected.values()))
    listed = {(schema, name) for description, schema, name in entries if description == "TABLE DATA"}
    missing = [table for table, pair in expected.items() if pair not in listed]
    if missing:
        raise BackupVerificationFailed(
            f"{label}: pg_restore --list does not list the data of {len(missing)} table(s): {', '.join(missing[:5])}"
        )
    return {"check": "pg_restore --list", "toc_entries": len(entries), "tables_listed": len(listed)}
