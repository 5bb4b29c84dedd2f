"""Recovery targets as an operator types them: parsed, refused in one line, turned into settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hms_dr.errors import ParamInvalid
from hms_dr.physical.targets import TargetKind, parse_recovery_target, target_settings


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("time", "2026-11-24T03:15:00Z", datetime(2026, 11, 24, 3, 15, tzinfo=UTC)),
        ("time", "2026-11-24 04:15:00.250+01:00", datetime(2026, 11, 24, 3, 15, 0, 250000, tzinfo=UTC)),
        ("lsn", "16/B374D848", (0x16 << 32) | 0xB374D848),
        ("lsn", " 0/3000060 ", 0x3000060),
        ("xid", "726", 726),
        ("xid", str(2**40 + 726), 2**40 + 726),  # pg_current_xact_id() carries the epoch
        ("name", "before_the_migration", "before_the_migration"),
        ("name", "x" * 63, "x" * 63),
        ("IMMEDIATE", None, None),
        ("latest", "", None),
    ],
)
def test_valid_targets_are_parsed(kind: str, value: str | None, expected: object) -> None:
    target = parse_recovery_target(kind, value)
    assert target.kind is TargetKind(kind.lower())
    field = {"time": target.time, "lsn": target.lsn, "xid": target.xid, "name": target.name}.get(kind.lower())
    assert field == expected


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("when", "x", "is not one of time, lsn, xid, name, immediate, latest"),
        ("time", "2026-11-24T03:15:00", "has no time zone"),
        ("time", "yesterday", "is not an ISO-8601 timestamp"),
        ("time", None, "needs a value"),
        ("lsn", "3000060", "is not of the form X/X"),
        ("lsn", "0/XYZ", "is not of the form X/X"),
        ("xid", "-5", "is not a non-negative integer"),
        ("xid", "12.5", "is not a non-negative integer"),
        ("xid", "2", "is out of range"),
        ("name", "x" * 64, "PostgreSQL keeps at most 63"),
        ("name", "two\nlines", "control character"),
        ("name", "   ", "needs a value"),
        ("latest", "now", "takes no value"),
        ("immediate", "0/1", "takes no value"),
    ],
)
def test_bad_targets_are_refused_in_one_line(kind: str, value: str | None, message: str) -> None:
    with pytest.raises(ParamInvalid, match=message) as caught:
        parse_recovery_target(kind, value)
    assert "\n" not in str(caught.value)


def test_settings_name_the_target_and_inclusiveness() -> None:
    assert target_settings(parse_recovery_target("latest")) == {}
    assert target_settings(parse_recovery_target("immediate")) == {"recovery_target": "immediate"}
    assert target_settings(parse_recovery_target("name", "p1")) == {"recovery_target_name": "p1"}
    assert target_settings(parse_recovery_target("xid", "726", inclusive=False)) == {
        "recovery_target_xid": "726",
        "recovery_target_inclusive": "off",
    }
    assert target_settings(parse_recovery_target("lsn", "0/3000060")) == {
        "recovery_target_lsn": "0/3000060",
        "recovery_target_inclusive": "on",
    }
    assert target_settings(parse_recovery_target("time", "2026-11-24T04:15:00+01:00"))["recovery_target_time"] == (
        "2026-11-24T03:15:00+00:00"
    )


def test_a_target_describes_itself_as_plain_data() -> None:
    target = parse_recovery_target("time", "2026-11-24T04:15:00+01:00")
    assert target.to_dict() == {"kind": "time", "value": "2026-11-24T03:15:00Z", "inclusive": True}
    assert target.describe() == "time 2026-11-24T03:15:00Z"
    assert parse_recovery_target("lsn", "0/3000060").describe() == "LSN 0/3000060"
