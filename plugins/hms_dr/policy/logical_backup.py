"""The policy's ``logical_backup:`` section: what hms_daily_logical_backup dumps (schemas,
data-only tables), the views it takes baselines of, the dump's archive format, and its retries
and time limit.

The whole-database dump is a custom-format archive (``pg_dump -Fc``, one stream, nothing staged)
or a directory-format one (``pg_dump -Fd -j dump_jobs``, staged on the worker's disk, each file
then compressed, encrypted and stored as a payload of its own): ``format: auto`` (the default)
picks directory from ``directory_from_bytes`` of database size up. 8 GiB by default: below it the
single -Fc stream finishes in under 4 minutes at the bench's pace (1.25 GB in 31.5 s, about 25 s
per GiB, bench/results/2026-11-24-daily-backup-vs-pg-dump.md), so the staging disk a directory
dump needs (up to the database's size) buys little; above it the one stream sets the backup's
pace, and the directory's per-table files let pg_dump and the restore's ``pg_restore -j`` work on
several tables at once (a -Fc archive written to a pipe has no data offsets, so pg_restore -j
must scan it). The schema-only and data-only exports keep
their formats whichever is chosen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from hms_dr.policy.reader import PolicyReader

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")
GIB = 1 << 30


class DumpFormat(StrEnum):
    """``logical_backup.format``: the whole-database dump's archive format."""

    AUTO = "auto"  # directory from directory_from_bytes of database size up, custom below
    CUSTOM = "custom"  # pg_dump -Fc, one stream
    DIRECTORY = "directory"  # pg_dump -Fd -j dump_jobs, staged on the worker


@dataclass(frozen=True)
class LogicalBackupPolicy:
    schemas: tuple[str, ...]
    data_only_tables: tuple[str, ...]
    baseline_views: tuple[str, ...]
    retries: int
    retry_delay_s: int
    max_retry_delay_s: int
    execution_timeout_min: int
    format: DumpFormat = DumpFormat.AUTO
    directory_from_bytes: int = 8 * GIB
    # pg_dump -j of a directory dump, and how many of its files are compressed, encrypted and
    # uploaded at once; a custom-format dump is one stream whatever this says.
    dump_jobs: int = 2

    def dump_format_for(self, database_size_bytes: int) -> DumpFormat:
        """CUSTOM or DIRECTORY: the format this policy picks for a database of this size."""
        if self.format is not DumpFormat.AUTO:
            return self.format
        return DumpFormat.DIRECTORY if database_size_bytes >= self.directory_from_bytes else DumpFormat.CUSTOM

    def describe_format_choice(self, database_size_bytes: int) -> str:
        """One line saying which format a database of this size gets, and why."""
        chosen = self.dump_format_for(database_size_bytes)
        how = (
            f"pg_dump -Fd -j {self.dump_jobs}, staged on the worker"
            if chosen is DumpFormat.DIRECTORY
            else "pg_dump -Fc"
        )
        if self.format is not DumpFormat.AUTO:
            return f"{chosen.value} ({how}), set by logical_backup.format"
        side = "at or above" if chosen is DumpFormat.DIRECTORY else "below"
        return (
            f"{chosen.value} ({how}): the database's {database_size_bytes / GIB:.2f} GiB is {side}"
            f" logical_backup.directory_from_bytes ({self.directory_from_bytes / GIB:.2f} GiB)"
        )


def parse_logical_backup(reader: PolicyReader) -> LogicalBackupPolicy:
    """The ``logical_backup:`` section; format, directory_from_bytes and dump_jobs are optional
    and default as in LogicalBackupPolicy."""
    defaults = LogicalBackupPolicy((), (), (), 0, 0, 0, 1)
    section = reader.optional_mapping("logical_backup")

    def present(name: str) -> bool:
        return section.get(name) is not None

    return LogicalBackupPolicy(
        schemas=reader.identifiers("logical_backup.schemas", _IDENTIFIER),
        data_only_tables=reader.relation_names("logical_backup.data_only_tables"),
        baseline_views=reader.relation_names("logical_backup.baseline_views"),
        retries=reader.integer("logical_backup.retries", minimum=0, maximum=20),
        retry_delay_s=reader.integer("logical_backup.retry_delay_s", minimum=0),
        max_retry_delay_s=reader.integer("logical_backup.max_retry_delay_s", minimum=0),
        execution_timeout_min=reader.integer("logical_backup.execution_timeout_min", minimum=1),
        format=reader.choice("logical_backup.format", DumpFormat) if present("format") else defaults.format,
        directory_from_bytes=(
            reader.integer("logical_backup.directory_from_bytes", minimum=0)
            if present("directory_from_bytes")
            else defaults.directory_from_bytes
        ),
        # At most 16: each job is a server connection and a pg_dump process, each upload a zstd and gpg pair.
        dump_jobs=reader.integer("logical_backup.dump_jobs", minimum=1, maximum=16)
        if present("dump_jobs")
        else defaults.dump_jobs,
    )
