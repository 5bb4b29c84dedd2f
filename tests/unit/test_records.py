"""Records round-trip through JSON exactly, as they do through Airflow's XCom."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from hms_dr.records import Record


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    name: str
    size: int


@dataclass(frozen=True)
class Outer(Record):
    at: datetime
    where: Path
    colour: Colour
    inners: tuple[Inner, ...]
    by_name: dict[str, Inner]
    maybe: Inner | None = None
    seconds: float = 0.0
    free_form: Any = None
    names: list[str] = field(default_factory=list)


def through_json(record: Record) -> Any:
    return json.loads(json.dumps(record.to_xcom()))


def test_a_record_comes_back_equal_after_json() -> None:
    record = Outer(
        at=datetime(2026, 12, 2, 13, 0, tzinfo=timezone(timedelta(hours=2))),
        where=Path("/var/tmp/x"),
        colour=Colour.BLUE,
        inners=(Inner("a", 1), Inner("b", 2)),
        by_name={"c": Inner("c", 3)},
        maybe=Inner("d", 4),
        seconds=2,
        free_form={"k": [1, 2]},
        names=["x"],
    )
    back = Outer.from_xcom(through_json(record))
    assert back == record
    assert back.at.utcoffset() == timedelta(hours=2)
    assert isinstance(back.seconds, float) and isinstance(back.inners, tuple)


def test_none_and_defaults_survive() -> None:
    record = Outer(at=datetime(2026, 1, 1, tzinfo=UTC), where=Path("p"), colour=Colour.RED, inners=(), by_name={})
    assert Outer.from_xcom(through_json(record)) == record


def test_an_unknown_field_or_a_wrong_shape_is_refused() -> None:
    data = through_json(
        Outer(at=datetime(2026, 1, 1, tzinfo=UTC), where=Path("p"), colour=Colour.RED, inners=(), by_name={})
    )
    with pytest.raises(TypeError, match="no field"):
        Outer.from_xcom({**data, "surprise": 1})
    with pytest.raises(TypeError, match="mapping"):
        Outer.from_xcom(["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Outer.from_xcom({**data, "colour": "green"})
