"""The RTO verdict: wall clock from the start of the fetch to the end of the checks, against the
policy's target; exactly at the target still passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hms_dr.restore_test.rto import rto_verdict

START = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("took", "within"),
    [
        (timedelta(minutes=12, seconds=3), True),
        (timedelta(hours=4), True),
        (timedelta(hours=4, milliseconds=1), False),
        (timedelta(hours=5), False),
    ],
)
def test_a_restore_is_within_its_rto_up_to_the_target_exactly(took: timedelta, within: bool) -> None:
    verdict = rto_verdict(START, START + took, rto_minutes=240)
    assert (verdict.seconds, verdict.target_s, verdict.within_target) == (took.total_seconds(), 14400, within)


def test_an_rto_over_target_fails_saying_how_long_it_took_and_the_target() -> None:
    over = rto_verdict(START, START + timedelta(hours=4, minutes=30), rto_minutes=240)
    assert over.failure("logical restore of 20261124T020001Z") == (
        "logical restore of 20261124T020001Z took 270.0 min, over the RTO target of 240 min"
    )
    assert rto_verdict(START, START + timedelta(minutes=3), rto_minutes=240).failure("x") is None
