"""Verifying a dump while it streams past, before it is encrypted.

Custom-format archives are fed to ``pg_restore --list``, which must read the table of contents
and list the data of every table the baselines hold; plain SQL must end with pg_dump's
completion line. The plain bytes are hashed on the way (``plain_sha256`` in the manifest).
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from hms_dr.errors import BackupVerificationFailed
from hms_dr.logical.content import ArchiveDigester, ContentDigests
from hms_dr.names import split_relation_key
from hms_dr.pgtools import parse_restore_list, pg_restore_list_argv

PLAIN_DUMP_END_MARK = b"-- PostgreSQL database dump complete"


@dataclass
class StreamVerifier:
    """Reads the plain archive as it streams past: pg_restore --list and the content digest for
    custom archives, the closing line for plain SQL."""

    archive_format: str
    process: subprocess.Popen[bytes] | None = None
    listing: bytes = b""
    stderr: bytes = b""
    tail: bytes = b""
    accepting: bool = True
    _reader: threading.Thread | None = None
    plain_hash: Any = field(default_factory=hashlib.sha256)
    plain_size: int = 0
    digester: ArchiveDigester | None = None
    content: ContentDigests | None = None

    def start(self) -> None:
        if self.archive_format != "c":
            return
        self.digester = ArchiveDigester()
        self.process = subprocess.Popen(
            pg_restore_list_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._collect, name="pg_restore-list", daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process is not None and self.process.stdout is not None and self.process.stderr is not None
        self.listing = self.process.stdout.read()
        self.stderr = self.process.stderr.read()

    def feed(self, chunk: bytes) -> None:
        self.plain_hash.update(chunk)
        self.plain_size += len(chunk)
        self.tail = (self.tail + chunk)[-4096:]
        if self.digester is not None:
            self.digester.feed(chunk)
        if self.process is None or not self.accepting:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(chunk)
        except BrokenPipeError:
            # pg_restore --list stops reading once it has the table of contents.
            self.accepting = False

    def finish(self, expect_table_data: tuple[str, ...], label: str) -> dict[str, Any]:
        """Raise unless the dump is complete; ``expect_table_data``: schema.name keys of the tables
        whose TABLE DATA entry must be listed (tables that hold rows: not partitioned parents,
        and materialized views, listed as MATERIALIZED VIEW DATA, are not among them)."""
        if self.process is None:
            if self.plain_size == 0 or PLAIN_DUMP_END_MARK not in self.tail:
                raise BackupVerificationFailed(f"{label}: the plain SQL dump does not end with pg_dump's completion line")
            return {"check": "plain dump completion line", "plain_size_bytes": self.plain_size}
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        code = self.process.wait()
        if self._reader is not None:
            self._reader.join()
        if code != 0:
            last = self.stderr.decode("utf-8", "replace").strip().splitlines()
            raise BackupVerificationFailed(f"{label}: pg_restore --list failed: {last[-1] if last else f'exit {code}'}")
        assert self.digester is not None
        self.content = self.digester.finish(label)
        # Matched as (schema, name) pairs: names may hold spaces and dots (see parse_restore_list).
        expected = {table: split_relation_key(table) for table in expect_table_data}
        entries = parse_restore_list(self.listing.decode("utf-8", "replace"), known=set(expected.values()))
        listed = {(schema, name) for description, schema, name in entries if description == "TABLE DATA"}
        missing = [table for table, pair in expected.items() if pair not in listed]
        if missing:
            raise BackupVerificationFailed(
                f"{label}: pg_restore --list does not list the data of {len(missing)} table(s): {', '.join(missing[:5])}"
            )
        return {"check": "pg_restore --list; content digest", "toc_entries": len(entries), "tables_listed": len(listed),
                "tables_digested": len(self.content.tables)}

    def kill(self) -> None:
        if self.digester is not None:
            self.digester.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
