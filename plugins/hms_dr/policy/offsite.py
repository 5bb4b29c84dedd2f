"""The policy's ``offsite:`` section: how old the newest offsite copy may get, the Object Lock
every upload carries, how often existing copies are re-read, and the sync's retries.

Every key is optional and defaults as in :class:`OffsitePolicy`; the offsite store itself
(``store.offsite_url``, ``store.offsite_connection_id``) and its 90-day window
(``retention.offsite_days``) live where the other stores and windows do.

How old the newest offsite copy may get is configured here and only here (``max_age_days``,
``max_age_days_by_kind``): this section is the one that holds every offsite setting, and it can
give each kind its own limit (monthly restore tests). ``offsite.freshness.judge_offsite_freshness``
is its one judge, called by hms_offsite_sync after each pass and by hms_backup_freshness every
15 minutes. The old ``alerts.freshness.max_age.offsite`` is still read, with a deprecation
warning: a duration is mapped onto ``max_age_days`` here, ``off`` onto
``alerts.freshness.watch_offsite: false`` by parse_alerts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hms_dr.manifest import BackupKind
from hms_dr.policy.reader import PolicyReader, parse_duration
from hms_dr.store.base import OBJECT_LOCK_MODES  # the modes the store can put on an upload

log = logging.getLogger(__name__)

DEPRECATED_MAX_AGE_KEY = "alerts.freshness.max_age.offsite"


def _default_max_age_by_kind() -> dict[str, int]:
    # Restore tests run monthly: a week-old limit would page every week for a healthy system.
    return {BackupKind.RESTORE_TEST.value: 35}


@dataclass(frozen=True)
class OffsitePolicy:
    """hms_offsite_sync's settings."""

    max_age_days: int = 8  # the newest offsite copy of a kind may be this old (a weekly sync + a day)
    max_age_days_by_kind: Mapping[str, int] = field(default_factory=_default_max_age_by_kind)
    object_lock: bool = True  # lock uploads when the offsite bucket has Object Lock enabled
    object_lock_mode: str = "COMPLIANCE"
    object_lock_days: int = 90
    # Each run re-reads (sha256) the existing offsite sets of one slot out of this many, so every
    # copy is proven again within this many weeks while a run reads 1/N of the offsite bytes.
    reverify_weeks: int = 4
    retries: int = 3
    retry_delay_s: int = 300
    max_retry_delay_s: int = 1800
    execution_timeout_min: int = 360

    def max_age_days_for(self, kind: BackupKind) -> int:
        return self.max_age_days_by_kind.get(kind.value, self.max_age_days)


def parse_offsite(reader: PolicyReader, *, offsite_days: int) -> OffsitePolicy:
    """The optional ``offsite:`` section; ``offsite_days`` is retention.offsite_days, which an
    Object Lock may not outlast (retention could never delete what it expires)."""
    defaults = OffsitePolicy()
    section = reader.optional_mapping("offsite")

    def integer(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        return (
            reader.integer(f"offsite.{name}", minimum=minimum, maximum=maximum)
            if section.get(name) is not None
            else default
        )

    lock = section.get("object_lock")
    if lock is not None and not isinstance(lock, dict):
        raise reader.fail("offsite.object_lock", f"must be a mapping, got {lock!r}")
    lock = lock or {}
    mode = str(lock.get("mode", defaults.object_lock_mode))
    if mode not in OBJECT_LOCK_MODES:
        raise reader.fail("offsite.object_lock.mode", f"must be one of {' | '.join(OBJECT_LOCK_MODES)}, got {mode!r}")
    lock_days = (
        reader.integer("offsite.object_lock.days", minimum=1)
        if lock.get("days") is not None
        else defaults.object_lock_days
    )
    if lock_days > offsite_days:
        raise reader.fail(
            "offsite.object_lock.days",
            f"is {lock_days}, longer than retention.offsite_days ({offsite_days}): locked copies could never expire",
        )
    enabled = lock.get("enabled", defaults.object_lock)
    if not isinstance(enabled, bool):
        raise reader.fail("offsite.object_lock.enabled", f"must be true or false, got {enabled!r}")
    max_age_days = integer("max_age_days", defaults.max_age_days, minimum=1)
    old_days = _deprecated_max_age_days(reader, explicit=section.get("max_age_days") is not None)
    return OffsitePolicy(
        max_age_days=max_age_days if old_days is None else old_days,
        max_age_days_by_kind=_max_age_by_kind(reader, section.get("max_age_days_by_kind"), defaults),
        object_lock=enabled,
        object_lock_mode=mode,
        object_lock_days=lock_days,
        reverify_weeks=integer("reverify_weeks", defaults.reverify_weeks, minimum=1, maximum=52),
        retries=integer("retries", defaults.retries, minimum=0, maximum=20),
        retry_delay_s=integer("retry_delay_s", defaults.retry_delay_s, minimum=0),
        max_retry_delay_s=integer("max_retry_delay_s", defaults.max_retry_delay_s, minimum=0),
        execution_timeout_min=integer("execution_timeout_min", defaults.execution_timeout_min, minimum=1),
    )


def _deprecated_max_age_days(reader: PolicyReader, *, explicit: bool) -> int | None:
    """``alerts.freshness.max_age.offsite`` (before issue 13 the freshness DAG's own offsite limit):
    its duration in whole days, rounded up, when ``offsite.max_age_days`` is not set; else None.
    Either way a deprecation warning names what to write instead."""
    alerts = reader.data.get("alerts")
    freshness = alerts.get("freshness") if isinstance(alerts, dict) else None
    ages = freshness.get("max_age") if isinstance(freshness, dict) else None
    if not isinstance(ages, dict) or "offsite" not in ages:
        return None
    value = ages["offsite"]
    if value is None or value == "off":
        return None  # parse_alerts maps it onto alerts.freshness.watch_offsite: false
    try:
        days = max(1, math.ceil(parse_duration(value).total_seconds() / 86400))
    except ValueError as exc:
        raise reader.fail(DEPRECATED_MAX_AGE_KEY, f"{exc} (deprecated: write offsite.max_age_days instead)") from None
    if explicit:
        log.warning(
            "%s: %s is deprecated and ignored: offsite.max_age_days is set and is the one offsite limit; remove the old key",
            reader.source,
            DEPRECATED_MAX_AGE_KEY,
        )
        return None
    log.warning(
        "%s: %s is deprecated: read as offsite.max_age_days: %d; write that instead (the one offsite limit, "
        "judged by hms_offsite_sync and hms_backup_freshness alike)",
        reader.source,
        DEPRECATED_MAX_AGE_KEY,
        days,
    )
    return days


def _max_age_by_kind(reader: PolicyReader, value: Any, defaults: OffsitePolicy) -> dict[str, int]:
    if value is None:
        return dict(defaults.max_age_days_by_kind)
    if not isinstance(value, dict):
        raise reader.fail("offsite.max_age_days_by_kind", f"must be a mapping of kind to days, got {value!r}")
    known = {kind.value for kind in BackupKind}
    by_kind: dict[str, int] = {}
    for kind, _days in value.items():
        if kind not in known:
            raise reader.fail(
                "offsite.max_age_days_by_kind", f"names {kind!r}, which is not a kind ({' | '.join(sorted(known))})"
            )
        by_kind[kind] = reader.integer(f"offsite.max_age_days_by_kind.{kind}", minimum=1)
    return by_kind
