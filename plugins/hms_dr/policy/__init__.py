"""The policy: what is protected, when, where to and for how long, read from one YAML file.

The file is validated whenever the DAGs are parsed, so a wrong value stops the DAGs from loading
with a one-line error naming the key, instead of producing a bad backup at 02:00. Credentials are
never part of the policy: it only names the Airflow Connections that hold them.

This package is the whole policy: ``reader`` (the checked lookups every section uses), one module
per section of the file, each with its record and its ``parse_<section>``, and here the
:class:`Policy` that holds every section, always set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hms_dr.encryption_mode import EncryptionMode
from hms_dr.errors import PolicyInvalid
from hms_dr.policy.alerts import (
    AlertChannels,
    AlertsPolicy,
    FreshnessKind,
    SlackChannel,
    SmtpChannel,
    SmtpSecurity,
    SnsChannel,
    describe_duration,
    parse_alerts,
)
from hms_dr.policy.base_backup import BaseBackupPolicy, parse_base_backup
from hms_dr.policy.cluster import ClusterPolicy, parse_cluster
from hms_dr.policy.compression import CompressionMethod, CompressionPolicy, parse_compression
from hms_dr.policy.dr import DrPolicy, IntegrityPolicy, parse_dr
from hms_dr.policy.dr_restore import DrRestorePolicy, parse_dr_restore
from hms_dr.policy.encryption import EncryptionPolicy, parse_encryption
from hms_dr.policy.logical_backup import DumpFormat, LogicalBackupPolicy, parse_logical_backup
from hms_dr.policy.offsite import OffsitePolicy, parse_offsite
from hms_dr.policy.reader import PolicyReader, parse_duration
from hms_dr.policy.restore_test import (
    RestoreTestMode,
    RestoreTestPolicy,
    SmokeQuery,
    parse_restore_test,
    read_only_problem,
)
from hms_dr.policy.retention import RetentionPolicy, parse_retention
from hms_dr.policy.schedules import SCHEDULE_NAMES, parse_schedules
from hms_dr.policy.staging import StagingPolicy, parse_staging
from hms_dr.policy.store import StorePolicy, parse_store
from hms_dr.policy.wal import WalPolicy, parse_wal

__all__ = [
    "DEFAULT_POLICY_PATH",
    "POLICY_ENV_VAR",
    "SCHEDULE_NAMES",
    "SUPPORTED_FORMAT_VERSIONS",
    "AlertChannels",
    "AlertsPolicy",
    "BaseBackupPolicy",
    "ClusterPolicy",
    "CompressionMethod",
    "CompressionPolicy",
    "DrPolicy",
    "DrRestorePolicy",
    "DumpFormat",
    "EncryptionMode",
    "EncryptionPolicy",
    "FreshnessKind",
    "IntegrityPolicy",
    "LogicalBackupPolicy",
    "OffsitePolicy",
    "Policy",
    "PolicyReader",
    "RestoreTestMode",
    "RestoreTestPolicy",
    "RetentionPolicy",
    "SlackChannel",
    "SmokeQuery",
    "SmtpChannel",
    "SmtpSecurity",
    "SnsChannel",
    "StagingPolicy",
    "StorePolicy",
    "WalPolicy",
    "describe_duration",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "policy_path",
    "read_only_problem",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_POLICY_PATH = REPO_ROOT / "include" / "policy.yaml"
POLICY_ENV_VAR = "HMS_DR_POLICY"
SUPPORTED_FORMAT_VERSIONS = (1,)


@dataclass(frozen=True)
class Policy:
    """The whole policy file, every section parsed and checked."""

    source: str
    cluster: ClusterPolicy
    schedules: Mapping[str, str]
    store: StorePolicy
    staging: StagingPolicy
    encryption: EncryptionPolicy
    compression: CompressionPolicy
    logical_backup: LogicalBackupPolicy
    restore_test: RestoreTestPolicy
    retention: RetentionPolicy
    wal: WalPolicy
    rpo_minutes: int  # targets.rpo_minutes
    rto_minutes: int  # targets.rto_minutes
    base_backup: BaseBackupPolicy
    offsite: OffsitePolicy
    alerts: AlertsPolicy
    dr: DrPolicy
    dr_restore: DrRestorePolicy  # the dr.restore keys
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


def policy_path() -> Path:
    """The policy file in force: $HMS_DR_POLICY, else the committed include/policy.yaml."""
    return Path(os.environ.get(POLICY_ENV_VAR) or DEFAULT_POLICY_PATH)


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate the policy file; raises PolicyInvalid naming the file and the key."""
    import yaml  # a light import, but only needed here

    path = path or policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyInvalid(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "malformed YAML"
        raise PolicyInvalid(f"policy file {path} is not valid YAML: {first_line}") from exc
    return parse_policy(data, source=str(path))


def parse_policy(data: Any, *, source: str = "<policy>") -> Policy:
    """Validate a policy mapping (as read from YAML) and return the typed Policy."""
    reader = PolicyReader(data, source)
    version = reader.integer("format_version", minimum=1)
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise PolicyInvalid(f"{source}: format_version {version} is not supported (known: 1)")
    cluster = parse_cluster(reader)
    schedules = parse_schedules(reader)
    store = parse_store(reader)
    staging = parse_staging(reader)
    encryption = parse_encryption(reader)
    compression = parse_compression(reader)
    logical_backup = parse_logical_backup(reader)
    restore_test = parse_restore_test(reader)
    retention = parse_retention(reader)
    wal = parse_wal(reader)
    rpo_minutes = reader.integer("targets.rpo_minutes", minimum=1)
    rto_minutes = reader.integer("targets.rto_minutes", minimum=1)
    return Policy(
        source=source,
        cluster=cluster,
        schedules=schedules,
        store=store,
        staging=staging,
        encryption=encryption,
        compression=compression,
        logical_backup=logical_backup,
        restore_test=restore_test,
        retention=retention,
        wal=wal,
        rpo_minutes=rpo_minutes,
        rto_minutes=rto_minutes,
        base_backup=parse_base_backup(reader, staging.dir),
        offsite=parse_offsite(reader, offsite_days=retention.offsite_days),
        alerts=parse_alerts(reader, rto_minutes=rto_minutes),
        dr=parse_dr(reader),
        dr_restore=parse_dr_restore(reader),
        raw=data,
    )
