"""The policy's ``dr:`` section: where a point-in-time recovery may build its cluster (data
directory roots, port range), how the DR runs retry and how long they may take, and how the
weekly integrity check runs ``pg_amcheck`` on production.

Every key is optional and defaults as in :class:`DrPolicy`; an empty ``allowed_data_roots``
(the default) means ``hms_dr_pitr`` refuses every data directory until the policy names one.
The PITR tasks run on the database-host queue (``wal.spool_queue``): the data directory and
the port are that host's. The ``dr.restore`` keys are hms_dr.policy.dr_restore's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hms_dr.policy.reader import PolicyReader

MIN_PORT = 1024
MAX_PORT = 65535


@dataclass(frozen=True)
class IntegrityPolicy:
    """hms_integrity_check: pg_amcheck options that keep it read-only and production-safe."""

    heapallindexed: bool = True  # every heap tuple must have its index entry (reads each table once more)
    jobs: int = 1  # pg_amcheck --jobs: concurrent connections to production
    lock_timeout_s: int = 60  # never queue long behind an ACCESS EXCLUSIVE lock (ALTER TABLE, VACUUM FULL)
    retries: int = 1
    retry_delay_s: int = 300
    execution_timeout_min: int = 180


@dataclass(frozen=True)
class DrPolicy:
    """hms_dr_pitr's limits and the integrity check's settings."""

    allowed_data_roots: tuple[Path, ...] = ()
    pitr_port_range: tuple[int, int] = (5433, 5532)  # below the ephemeral port range
    retries: int = 1  # transient failures only (an unreachable store); a wrong answer fails at once
    retry_delay_s: int = 60
    max_retry_delay_s: int = 600
    pitr_execution_timeout_min: int = 360
    integrity: IntegrityPolicy = field(default_factory=IntegrityPolicy)


def parse_dr(reader: PolicyReader) -> DrPolicy:
    """The optional ``dr:`` section."""
    defaults = DrPolicy()
    section = reader.optional_mapping("dr")

    def present(name: str, within: dict[str, Any] = section) -> bool:
        return within.get(name) is not None

    def integer(key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        *parents, name = key.split(".")
        node = section if not parents else (section.get(parents[0]) or {})
        return reader.integer(f"dr.{key}", minimum=minimum, maximum=maximum) if present(name, node) else default

    roots = defaults.allowed_data_roots
    if present("allowed_data_roots"):
        value = section["allowed_data_roots"]
        if not isinstance(value, list):
            raise reader.fail("dr.allowed_data_roots", f"must be a list of absolute directories, got {value!r}")
        checked = []
        for item in value:
            if (
                not isinstance(item, str)
                or not item.startswith("/")
                or ".." in Path(item).parts
                or Path(item) == Path("/")
            ):
                raise reader.fail(
                    "dr.allowed_data_roots",
                    f"holds {item!r}: each must be an absolute directory other than / without '..'",
                )
            checked.append(Path(item))
        roots = tuple(checked)

    ports = defaults.pitr_port_range
    if present("pitr_port_range"):
        value = section["pitr_port_range"]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) and MIN_PORT <= p <= MAX_PORT for p in value)
            or value[0] > value[1]
        ):
            raise reader.fail(
                "dr.pitr_port_range", f"must be [first, last] ports within {MIN_PORT}..{MAX_PORT}, got {value!r}"
            )
        ports = (int(value[0]), int(value[1]))

    integrity_section = section.get("integrity")
    if integrity_section is not None and not isinstance(integrity_section, dict):
        raise reader.fail("dr.integrity", f"must be a mapping, got {integrity_section!r}")
    integrity_defaults = IntegrityPolicy()
    integrity = IntegrityPolicy(
        heapallindexed=(
            reader.boolean("dr.integrity.heapallindexed")
            if present("heapallindexed", integrity_section or {})
            else integrity_defaults.heapallindexed
        ),
        jobs=integer("integrity.jobs", integrity_defaults.jobs, minimum=1, maximum=16),
        lock_timeout_s=integer("integrity.lock_timeout_s", integrity_defaults.lock_timeout_s, minimum=1, maximum=3600),
        retries=integer("integrity.retries", integrity_defaults.retries, minimum=0, maximum=10),
        retry_delay_s=integer("integrity.retry_delay_s", integrity_defaults.retry_delay_s, minimum=0),
        execution_timeout_min=integer(
            "integrity.execution_timeout_min", integrity_defaults.execution_timeout_min, minimum=1
        ),
    )
    return DrPolicy(
        allowed_data_roots=roots,
        pitr_port_range=ports,
        retries=integer("retries", defaults.retries, minimum=0, maximum=10),
        retry_delay_s=integer("retry_delay_s", defaults.retry_delay_s, minimum=0),
        max_retry_delay_s=integer("max_retry_delay_s", defaults.max_retry_delay_s, minimum=0),
        pitr_execution_timeout_min=integer(
            "pitr_execution_timeout_min", defaults.pitr_execution_timeout_min, minimum=1
        ),
        integrity=integrity,
    )
