"""The policy's ``wal:`` section: where archive_command spools WAL segments, and how
hms_wal_archive ships them (spool removal, the database host's queue, retries)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hms_dr.policy.reader import PolicyReader


@dataclass(frozen=True)
class WalPolicy:
    """WAL shipping: where archive_command spools segments and how hms_wal_archive treats them."""

    spool_dir: Path
    remove_shipped_from_spool: bool = True
    spool_queue: str = "default"
    retries: int = 2
    retry_delay_s: int = 20
    max_retry_delay_s: int = 90
    execution_timeout_min: int = 4


def parse_wal(reader: PolicyReader) -> WalPolicy:
    """The ``wal:`` section; keys added after spool_dir are optional and default as in WalPolicy."""
    spool_dir = Path(reader.absolute_path("wal.spool_dir"))  # first: a missing section is named by this key
    defaults = WalPolicy(spool_dir=spool_dir)
    section = reader.value("wal")

    def present(name: str) -> bool:
        return isinstance(section, dict) and name in section

    return WalPolicy(
        spool_dir=spool_dir,
        remove_shipped_from_spool=(
            reader.boolean("wal.remove_shipped_from_spool")
            if present("remove_shipped_from_spool")
            else defaults.remove_shipped_from_spool
        ),
        spool_queue=reader.text("wal.spool_queue") if present("spool_queue") else defaults.spool_queue,
        retries=reader.integer("wal.retries", minimum=0, maximum=20) if present("retries") else defaults.retries,
        retry_delay_s=reader.integer("wal.retry_delay_s", minimum=0)
        if present("retry_delay_s")
        else defaults.retry_delay_s,
        max_retry_delay_s=(
            reader.integer("wal.max_retry_delay_s", minimum=0)
            if present("max_retry_delay_s")
            else defaults.max_retry_delay_s
        ),
        execution_timeout_min=(
            reader.integer("wal.execution_timeout_min", minimum=1)
            if present("execution_timeout_min")
            else defaults.execution_timeout_min
        ),
    )
