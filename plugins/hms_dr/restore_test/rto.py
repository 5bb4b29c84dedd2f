"""The RTO verdict: how long a restore took, wall clock from the start of the fetch (or of the
recovery) to the end of the checks, against the policy's target (``targets.rto_minutes``).

The time between Airflow's tasks counts too: that is what an operator would wait in a real restore.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RtoVerdict:
    seconds: float  # measured, unrounded: the verdict is on this
    target_s: int

    @property
    def within_target(self) -> bool:
        return self.seconds <= self.target_s

    def failure(self, restored_what: str) -> str | None:
        """Why the restore fails its RTO, or None when it is within target."""
        if self.within_target:
            return None
        return f"{restored_what} took {self.seconds / 60:.1f} min, over the RTO target of {self.target_s // 60} min"


def rto_verdict(started_at: datetime, finished_at: datetime, rto_minutes: int) -> RtoVerdict:
    return RtoVerdict((finished_at - started_at).total_seconds(), rto_minutes * 60)
