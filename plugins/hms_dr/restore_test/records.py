"""What the restore test's steps hand each other (as XCom, through ``hms_dr.records.Record``): the
plan, what a logical restore and a drill's recovery left, the offline checksum check, the report.

The keys are the ones the DAG's tasks have always returned and the tests and the demo read; a
report's ``to_xcom()`` is also, byte for byte in its keys, the stored ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from hms_dr.policy import RestoreTestMode
from hms_dr.records import Record
from hms_dr.scratch.cluster import ScratchCluster


class RestoreTestPart(Enum):
    """A part of a restore test run; a task belongs to one, and runs only when the mode has it."""

    LOGICAL = "logical"  # pg_restore of the daily set into a scratch database
    PHYSICAL = "physical"  # the drill: PITR of a base backup to the set's snapshot LSN


@dataclass(frozen=True)
class DrillPlan(Record):
    """Where the drill's throw-away cluster goes and the LSN it recovers to (the set's snapshot)."""

    target_lsn: str
    home: Path
    data_dir: Path
    socket_dir: Path
    log_file: Path

    @classmethod
    def of(cls, target_lsn: str, cluster: ScratchCluster) -> DrillPlan:
        return cls(target_lsn, cluster.home, cluster.data_dir, cluster.socket_dir, cluster.log_file)

    @property
    def cluster(self) -> ScratchCluster:
        return ScratchCluster(self.home, self.socket_dir, self.log_file)


@dataclass(frozen=True)
class UpgradeRehearsal(Record):
    """An upgrade rehearsal: the set, taken from a server of ``from_version``, restored into the
    rehearsal server (``restore_test.upgrade_rehearsal_connection_id``) of the newer ``to_version``."""

    connection_id: str
    from_version: str  # the set's manifest: server.version ("15.18")
    to_version: str  # the rehearsal server, as it reported itself when the run was planned ("18.6")

    def describe(self) -> str:
        return f"PostgreSQL {self.from_version} → {self.to_version}"


@dataclass(frozen=True)
class RestoreTestPlan(Record):
    """One run's plan: the set, its scratch database, the mode this store can serve, the drill's plan."""

    backup_set_id: str
    manifest_key: str
    scratch_database: str
    restore_jobs: int
    keep_scratch: bool
    mode: RestoreTestMode
    physical: DrillPlan | None = None  # set exactly when the mode has the drill
    # Set when the run is an upgrade rehearsal (logical only): every step then uses its server.
    upgrade_rehearsal: UpgradeRehearsal | None = None

    def to_xcom(self) -> dict[str, Any]:
        data = super().to_xcom()
        # No drill planned, no rehearsal: no key (as always; readers test their absence).
        for name in ("physical", "upgrade_rehearsal"):
            if data[name] is None:
                del data[name]
        return data

    def runs(self, part: RestoreTestPart) -> bool:
        return self.mode.physical if part is RestoreTestPart.PHYSICAL else self.mode.logical

    def left_out(self, part: RestoreTestPart) -> str | None:
        """Why a task of ``part`` does not run in this run, or None when it does."""
        return None if self.runs(part) else f"mode {self.mode.value}: no {part.value} restore in this run"


@dataclass(frozen=True)
class LogicalRestore(Record):
    """What restoring the set into the scratch database took (RTO runs from ``fetch_started_at``)."""

    fetch_started_at: datetime
    steps_s: dict[str, float]  # download_and_verify, decrypt, pg_restore[, content_digest_after_restore]
    stored_size_bytes: int
    plain_size_bytes: int
    # The scratch database's content digests, taken as pg_restore restored each table
    # (content.DigestTaken.to_json); None: the set has none, the checks take them.
    content: Any = None


@dataclass(frozen=True)
class RecoveredCluster(Record):
    """The drill's recovered, promoted cluster (RTO runs from ``started_at``)."""

    started_at: datetime
    port: int
    data_dir: Path
    socket_dir: Path
    log_file: Path
    base_backup_set_id: str
    timeline: int
    recovery_end_lsn: str | None
    seconds: dict[str, float]  # recover's seconds per step

    def server_record(self) -> dict[str, Any]:
        """Where its server runs, as ``hms_dr.physical.drill`` reads it."""
        return {
            "data_dir": str(self.data_dir),
            "port": self.port,
            "socket_dir": str(self.socket_dir),
            "log_file": str(self.log_file),
        }


@dataclass(frozen=True)
class OfflineChecksums(Record):
    """``pg_checksums --check`` of the stopped recovered cluster (``hms_dr.physical.drill``)."""

    checksums_enabled: bool
    files_scanned: int | None
    blocks_scanned: int | None
    bad_checksums: int
    bad_blocks: list[dict[str, Any]]


# The report's fields of one part only: absent from its summary (and XCom) in a report of the other.
_FIELDS_OF_PART = {
    RestoreTestPart.LOGICAL: ("scratch_database",),
    RestoreTestPart.PHYSICAL: ("base_backup_set_id", "target_lsn", "timeline", "recovery_end_lsn"),
}


@dataclass(frozen=True, kw_only=True)
class RestoreTestReport(Record):
    """A restored copy checked against its set's baselines, with the RTO: ``summary.json``."""

    backup_set_id: str
    backup_manifest: str  # where the set's manifest is, as the store describes it
    mode: RestoreTestPart
    scratch_database: str | None = None  # logical
    base_backup_set_id: str | None = None  # physical: the base backup recovered...
    target_lsn: str | None = None  # ...to this LSN (the set's snapshot)...
    timeline: int | None = None  # ...onto this new timeline
    recovery_end_lsn: str | None = None
    passed: bool  # checks passed and the RTO within target
    checks_passed: bool
    checks: list[dict[str, Any]]  # one row per check (hms_dr.quality)
    failed: list[str]  # the failed checks' messages
    rto_s: float
    rto_target_s: int
    steps_s: dict[str, float]
    # An upgrade rehearsal's versions, "PostgreSQL 15.18 → 18.6" (UpgradeRehearsal.describe);
    # absent from the summary of an ordinary restore test.
    upgrade_rehearsal: str | None = None

    def to_xcom(self) -> dict[str, Any]:
        """The report as ``summary.json`` stores it (and the task returns it): the other part's
        fields left out, and ``upgrade_rehearsal`` unless the run was one."""
        others = {name for part, names in _FIELDS_OF_PART.items() if part is not self.mode for name in names}
        if self.upgrade_rehearsal is None:
            others.add("upgrade_rehearsal")
        return {name: value for name, value in super().to_xcom().items() if name not in others}

    @property
    def restored_what(self) -> str:
        rehearsal = f" (upgrade rehearsal: {self.upgrade_rehearsal})" if self.upgrade_rehearsal else ""
        return f"{self.mode.value} restore of {self.backup_set_id}{rehearsal}"
