"""The policy's ``logical_backup:`` section: what hms_daily_logical_backup dumps (schemas,
data-only tables), the views it takes baselines of, and its retries and time limit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hms_dr.policy.reader import PolicyReader

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


@dataclass(frozen=True)
class LogicalBackupPolicy:
    schemas: tuple[str, ...]
    data_only_tables: tuple[str, ...]
    baseline_views: tuple[str, ...]
    dump_jobs: int
    retries: int
    retry_delay_s: int
    max_retry_delay_s: int
    execution_timeout_min: int


def parse_logical_backup(reader: PolicyReader) -> LogicalBackupPolicy:
    return LogicalBackupPolicy(
        schemas=reader.identifiers("logical_backup.schemas", _IDENTIFIER),
        data_only_tables=reader.relation_names("logical_backup.data_only_tables"),
        baseline_views=reader.relation_names("logical_backup.baseline_views"),
        dump_jobs=reader.integer("logical_backup.dump_jobs", minimum=1, maximum=1),
        retries=reader.integer("logical_backup.retries", minimum=0, maximum=20),
        retry_delay_s=reader.integer("logical_backup.retry_delay_s", minimum=0),
        max_retry_delay_s=reader.integer("logical_backup.max_retry_delay_s", minimum=0),
        execution_timeout_min=reader.integer("logical_backup.execution_timeout_min", minimum=1),
    )
