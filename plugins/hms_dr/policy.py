"""The policy: what is protected, when, where to and for how long, read from one YAML file.

The file is validated whenever the DAGs are parsed, so a wrong value stops the DAGs from loading
with a one-line error naming the key, instead of producing a bad backup at 02:00. Credentials are
never part of the policy: it only names the Airflow Connections that hold them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from hms_dr.errors import PolicyInvalid
from hms_dr.names import capitals_outside_quotes, parse_relation_name
from hms_dr.offsite.policy import OffsitePolicy, parse_offsite
from hms_dr.policy_alerts import AlertsPolicy, parse_alerts
from hms_dr.policy_dr import DrPolicy, parse_dr
from hms_dr.dr.settings import DrRestorePolicy, parse_dr_restore
from hms_dr.smoke_queries import SmokeQuery, parse_smoke_queries

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_PATH = REPO_ROOT / "include" / "policy.yaml"
POLICY_ENV_VAR = "HMS_DR_POLICY"
SUPPORTED_FORMAT_VERSIONS = (1,)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")
_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
_CLUSTER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class EncryptionMode(str, Enum):
    PUBLIC_KEY = "public_key"
    SYMMETRIC = "symmetric"


class CompressionMethod(str, Enum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


@dataclass(frozen=True)
class ClusterPolicy:
    name: str
    database: str
    connection_id: str
    # postgres Connection as the replication role (hms_replica): pg_basebackup logs in with it
    replication_connection_id: str = "hms_replication"


@dataclass(frozen=True)
class StorePolicy:
    primary_url: str
    connection_id: str
    offsite_url: str
    offsite_connection_id: str
    part_size_mib: int
    verify_readback: bool


@dataclass(frozen=True)
class StagingPolicy:
    dir: Path
    min_free_mib: int
    reserve_ratio: float


@dataclass(frozen=True)
class EncryptionPolicy:
    mode: EncryptionMode
    key_id: str
    connection_id: str
    restore_connection_id: str


@dataclass(frozen=True)
class CompressionPolicy:
    method: CompressionMethod
    level: int
    threads: int


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


class RestoreTestMode(str, Enum):
    """What the restore test restores; each is checked against the daily set's baselines."""

    LOGICAL = "logical"  # pg_restore of the daily set into a scratch database
    PHYSICAL = "physical"  # PITR of the newest base backup to the daily set's snapshot LSN
    BOTH = "both"

    @property
    def logical(self) -> bool:
        return self is not RestoreTestMode.PHYSICAL

    @property
    def physical(self) -> bool:
        return self is not RestoreTestMode.LOGICAL


@dataclass(frozen=True)
class RestoreTestPolicy:
    on_every_backup: bool
    restore_jobs: int
    mode: RestoreTestMode = RestoreTestMode.BOTH
    # The application's own queries, run on every restored copy (hms_dr.smoke_queries); none by default.
    smoke_queries: tuple[SmokeQuery, ...] = ()


@dataclass(frozen=True)
class RetentionPolicy:
    logical_days: int
    orphan_payload_hours: int
    wal_days: int
    base_backups_keep: int
    offsite_days: int
    restore_reports_days: int
    # Optional grandfather-father-son keeps of the daily sets (0: off): the newest set of each of
    # the newest N ISO weeks / calendar months stays whatever its age (hms_dr.retention).
    gfs_weekly_keep: int = 0
    gfs_monthly_keep: int = 0


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


@dataclass(frozen=True)
class Policy:
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
    wal_spool_dir: Path
    rpo_minutes: int
    rto_minutes: int
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    wal: WalPolicy | None = None  # always set by parse_policy; holds wal_spool_dir too
    base_backup: BaseBackupPolicy | None = None  # always set by parse_policy
    offsite: OffsitePolicy | None = None  # always set by parse_policy (hms_dr.offsite.policy)
    alerts: AlertsPolicy | None = None  # always set by parse_policy (hms_dr.policy_alerts)
    dr: DrPolicy | None = None  # always set by parse_policy (hms_dr.policy_dr)
    dr_restore: DrRestorePolicy | None = None  # always set by parse_policy (hms_dr.dr.settings: dr.restore)


SCHEDULE_NAMES = (
    "daily_logical_backup",
    "wal_archive",
    "weekly_base_backup",
    "offsite_sync",
    "restore_test",
    "integrity_check",
)


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
    reader = _Reader(data, source)
    version = reader.integer("format_version", minimum=1)
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise PolicyInvalid(f"{source}: format_version {version} is not supported (known: 1)")

    cluster = ClusterPolicy(
        name=reader.matching("cluster.name", _CLUSTER_NAME, "lower-case letters, digits, '.', '_' or '-'"),
        database=reader.text("cluster.database"),
        connection_id=reader.text("cluster.connection_id"),
        replication_connection_id=(
            reader.text("cluster.replication_connection_id") if reader.data["cluster"].get("replication_connection_id") is not None
            else ClusterPolicy.replication_connection_id
        ),
    )
    schedules = {name: reader.cron(f"schedules.{name}") for name in SCHEDULE_NAMES}
    store = StorePolicy(
        primary_url=reader.store_url("store.primary_url"),
        connection_id=reader.text("store.connection_id"),
        offsite_url=reader.store_url("store.offsite_url"),
        offsite_connection_id=reader.text("store.offsite_connection_id"),
        part_size_mib=reader.integer("store.part_size_mib", minimum=5, maximum=5120),
        verify_readback=reader.boolean("store.verify_readback"),
    )
    if store.primary_url.rstrip("/") == store.offsite_url.rstrip("/"):
        raise PolicyInvalid(f"{source}: store.offsite_url must differ from store.primary_url")
    staging = StagingPolicy(
        dir=Path(reader.absolute_path("staging.dir")),
        min_free_mib=reader.integer("staging.min_free_mib", minimum=0),
        reserve_ratio=reader.number("staging.reserve_ratio", minimum=1.0),
    )
    mode = reader.choice("encryption.mode", EncryptionMode)
    key_id = reader.text("encryption.key_id").replace(" ", "").upper()
    if mode is EncryptionMode.PUBLIC_KEY and not _FINGERPRINT.match(key_id):
        raise PolicyInvalid(
            f"{source}: encryption.key_id must be the 40-hex-digit fingerprint of the backup public key, got {key_id!r}"
        )
    encryption = EncryptionPolicy(
        mode=mode,
        key_id=key_id,
        connection_id=reader.text("encryption.connection_id"),
        restore_connection_id=reader.text("encryption.restore_connection_id"),
    )
    method = reader.choice("compression.method", CompressionMethod)
    compression = CompressionPolicy(
        method=method,
        level=reader.integer("compression.level", minimum=0, maximum=19 if method is CompressionMethod.ZSTD else 9),
        threads=reader.integer("compression.threads", minimum=0, maximum=64),
    )
    logical = LogicalBackupPolicy(
        schemas=reader.identifiers("logical_backup.schemas", _IDENTIFIER),
        data_only_tables=reader.relation_names("logical_backup.data_only_tables"),
        baseline_views=reader.relation_names("logical_backup.baseline_views"),
        dump_jobs=reader.integer("logical_backup.dump_jobs", minimum=1, maximum=1),
        retries=reader.integer("logical_backup.retries", minimum=0, maximum=20),
        retry_delay_s=reader.integer("logical_backup.retry_delay_s", minimum=0),
        max_retry_delay_s=reader.integer("logical_backup.max_retry_delay_s", minimum=0),
        execution_timeout_min=reader.integer("logical_backup.execution_timeout_min", minimum=1),
    )
    restore_test = RestoreTestPolicy(
        on_every_backup=reader.boolean("restore_test.on_every_backup"),
        restore_jobs=reader.integer("restore_test.restore_jobs", minimum=1, maximum=16),
        mode=reader.choice("restore_test.mode", RestoreTestMode) if "mode" in reader.data["restore_test"] else RestoreTestPolicy.mode,
        smoke_queries=parse_smoke_queries(reader),
    )
    retention = RetentionPolicy(
        logical_days=reader.integer("retention.logical_days", minimum=1),
        orphan_payload_hours=reader.integer("retention.orphan_payload_hours", minimum=1),
        wal_days=reader.integer("retention.wal_days", minimum=1),
        base_backups_keep=reader.integer("retention.base_backups_keep", minimum=1),
        offsite_days=reader.integer("retention.offsite_days", minimum=1),
        restore_reports_days=reader.integer("retention.restore_reports_days", minimum=1),
        gfs_weekly_keep=_optional_keep(reader, "gfs_weekly_keep"),
        gfs_monthly_keep=_optional_keep(reader, "gfs_monthly_keep"),
    )
    return Policy(
        source=source,
        cluster=cluster,
        schedules=schedules,
        store=store,
        staging=staging,
        encryption=encryption,
        compression=compression,
        logical_backup=logical,
        restore_test=restore_test,
        retention=retention,
        wal_spool_dir=Path(reader.absolute_path("wal.spool_dir")),
        rpo_minutes=reader.integer("targets.rpo_minutes", minimum=1),
        rto_minutes=reader.integer("targets.rto_minutes", minimum=1),
        raw=data,
        wal=_wal_policy(reader),
        base_backup=_base_backup_policy(reader, staging.dir),
        offsite=parse_offsite(reader, offsite_days=retention.offsite_days),
        alerts=_alerts_policy(reader),
        dr=parse_dr(reader),
        dr_restore=parse_dr_restore(reader),
    )


def _alerts_policy(reader: _Reader) -> AlertsPolicy:
    """The optional ``alerts:`` section (channels, deadlines, freshness), parsed by hms_dr.policy_alerts."""
    return parse_alerts(reader, rto_minutes=reader.integer("targets.rto_minutes", minimum=1))


def _optional_keep(reader: _Reader, name: str) -> int:
    """retention.gfs_weekly_keep / gfs_monthly_keep: absent or null means 0 (off)."""
    if reader.data["retention"].get(name) is None:
        return 0
    return reader.integer(f"retention.{name}", minimum=0, maximum=520)


def _wal_policy(reader: _Reader) -> WalPolicy:
    """The ``wal:`` section; keys added after spool_dir are optional and default as in WalPolicy."""
    defaults = WalPolicy(spool_dir=Path("/"))
    section = reader.value("wal")

    def present(name: str) -> bool:
        return isinstance(section, dict) and name in section

    return WalPolicy(
        spool_dir=Path(reader.absolute_path("wal.spool_dir")),
        remove_shipped_from_spool=(
            reader.boolean("wal.remove_shipped_from_spool") if present("remove_shipped_from_spool") else defaults.remove_shipped_from_spool
        ),
        spool_queue=reader.text("wal.spool_queue") if present("spool_queue") else defaults.spool_queue,
        retries=reader.integer("wal.retries", minimum=0, maximum=20) if present("retries") else defaults.retries,
        retry_delay_s=reader.integer("wal.retry_delay_s", minimum=0) if present("retry_delay_s") else defaults.retry_delay_s,
        max_retry_delay_s=(
            reader.integer("wal.max_retry_delay_s", minimum=0) if present("max_retry_delay_s") else defaults.max_retry_delay_s
        ),
        execution_timeout_min=(
            reader.integer("wal.execution_timeout_min", minimum=1) if present("execution_timeout_min") else defaults.execution_timeout_min
        ),
    )


@dataclass(frozen=True)
class BaseBackupPolicy:
    """hms_weekly_base_backup: where pg_basebackup stages its tars and how they are compressed.
    How many sets are kept is retention.base_backups_keep."""

    staging_dir: Path  # pg_basebackup's tars and the copy pg_verifybackup reads: about 2 x the cluster
    staging_space_ratio: float = 2.2  # free space needed there, as a multiple of the cluster's size
    zstd_level: int = 1
    zstd_threads: int = 0  # 0 = one per core
    # A weekly job: retry twice with a long back-off (a busy or restarting primary), and never
    # let one run overlap the next Sunday's.
    retries: int = 2
    retry_delay_s: int = 600
    max_retry_delay_s: int = 3600
    execution_timeout_min: int = 360


BASE_BACKUP_STAGING_SUBDIR = "base-backup"


def _base_backup_policy(reader: _Reader, staging_dir: Path) -> BaseBackupPolicy:
    """The optional ``base_backup:`` section; a missing key takes BaseBackupPolicy's default and
    a missing staging_dir is ``<staging.dir>/base-backup``."""
    defaults = BaseBackupPolicy(staging_dir=staging_dir / BASE_BACKUP_STAGING_SUBDIR)
    section = reader.value("base_backup") if "base_backup" in reader.data else None
    if section is not None and not isinstance(section, dict):
        raise reader._fail("base_backup", f"must be a mapping, got {section!r}")

    def present(name: str) -> bool:
        return isinstance(section, dict) and section.get(name) is not None

    return BaseBackupPolicy(
        staging_dir=Path(reader.absolute_path("base_backup.staging_dir")) if present("staging_dir") else defaults.staging_dir,
        staging_space_ratio=(
            reader.number("base_backup.staging_space_ratio", minimum=2.0) if present("staging_space_ratio")
            else defaults.staging_space_ratio
        ),
        zstd_level=reader.integer("base_backup.zstd_level", minimum=1, maximum=19) if present("zstd_level") else defaults.zstd_level,
        zstd_threads=(
            reader.integer("base_backup.zstd_threads", minimum=0, maximum=64) if present("zstd_threads") else defaults.zstd_threads
        ),
        retries=reader.integer("base_backup.retries", minimum=0, maximum=20) if present("retries") else defaults.retries,
        retry_delay_s=reader.integer("base_backup.retry_delay_s", minimum=0) if present("retry_delay_s") else defaults.retry_delay_s,
        max_retry_delay_s=(
            reader.integer("base_backup.max_retry_delay_s", minimum=0) if present("max_retry_delay_s") else defaults.max_retry_delay_s
        ),
        execution_timeout_min=(
            reader.integer("base_backup.execution_timeout_min", minimum=1) if present("execution_timeout_min")
            else defaults.execution_timeout_min
        ),
    )


class _Reader:
    """Looks up dotted keys in the policy mapping and turns every bad value into one clear line."""

    def __init__(self, data: Any, source: str) -> None:
        if not isinstance(data, dict):
            raise PolicyInvalid(f"{source}: the policy must be a YAML mapping, got {type(data).__name__}")
        self.data = data
        self.source = source

    def _fail(self, key: str, why: str) -> PolicyInvalid:
        return PolicyInvalid(f"{self.source}: {key} {why}")

    def value(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise self._fail(key, "is missing")
            node = node[part]
        return node

    def text(self, key: str) -> str:
        value = self.value(key)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def matching(self, key: str, pattern: re.Pattern[str], described: str) -> str:
        value = self.text(key)
        if not pattern.match(value):
            raise self._fail(key, f"must be {described}, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be a whole number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self._fail(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self._fail(key, f"must be at most {maximum}, got {value}")
        return value

    def number(self, key: str, *, minimum: float) -> float:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, f"must be a number, got {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be at least {minimum}, got {value}")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self.value(key)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, enum: type[Enum]) -> Any:
        value = self.text(key)
        try:
            return enum(value)
        except ValueError:
            allowed = " | ".join(member.value for member in enum)
            raise self._fail(key, f"must be one of {allowed}, got {value!r}") from None

    def cron(self, key: str) -> str:
        value = self.text(key)
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise self._fail(key, f"must be a 5-field cron expression, got {value!r}")
        return value

    def store_url(self, key: str) -> str:
        value = self.text(key)
        if value.startswith("s3://") and len(value) > len("s3://"):
            return value
        if value.startswith("file:///"):
            return value
        raise self._fail(key, f"must be s3://bucket[/prefix] or file:///absolute/path, got {value!r}")

    def absolute_path(self, key: str) -> str:
        value = self.text(key)
        if not value.startswith("/"):
            raise self._fail(key, f"must be an absolute path, got {value!r}")
        return value

    def relation_names(self, key: str) -> tuple[str, ...]:
        """Relation names as SQL writes them (hms_dr.names): appointments, public."Order Details"."""
        value = self.value(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(key, f"must be a list of names, got {value!r}")
        for item in value:
            try:
                parse_relation_name(item)
            except ValueError as exc:
                raise self._fail(key, str(exc)) from None
            if capitals_outside_quotes(item):
                # SQL folds them to lower case; the author may have meant a mixed-case table.
                raise self._fail(key, f"holds {item!r} with capitals outside double quotes: write it in lower case, "
                                      'or quote a mixed-case name ("MixedCase")')
        if len(set(value)) != len(value):
            raise self._fail(key, "lists a name twice")
        return tuple(value)

    def identifiers(self, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        value = self.value(key)
        if not isinstance(value, list):
            raise self._fail(key, f"must be a list, got {value!r}")
        for item in value:
            if not isinstance(item, str) or not pattern.match(item):
                raise self._fail(key, f"holds {item!r}, which is not a plain lower-case SQL identifier")
        if len(set(value)) != len(value):
            raise self._fail(key, "lists a name twice")
        return tuple(value)
