"""The policy reader: looks up dotted keys in the policy mapping and turns every bad value into
one clear line naming the file and the key.

Each section module (hms_dr.policy.cluster, .alerts, .dr, ...) parses its part of the file with
it, so every section words its errors the same way: ``<file>: <key> <why>``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum
from typing import Any

from hms_dr.errors import PolicyInvalid
from hms_dr.names import capitals_outside_quotes, parse_relation_name

_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: Any) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``8d`` -> timedelta; ValueError for anything else (or zero)."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"must be a duration such as 90s, 10m, 2h or 8d, got {text!r}")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"must be longer than zero, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: amount})


class PolicyReader:
    """Reads typed values out of one policy mapping; every check raises PolicyInvalid."""

    def __init__(self, data: Any, source: str) -> None:
        if not isinstance(data, dict):
            raise PolicyInvalid(f"{source}: the policy must be a YAML mapping, got {type(data).__name__}")
        self.data = data
        self.source = source

    def fail(self, key: str, why: str) -> PolicyInvalid:
        """The error for ``key``, for the caller to raise."""
        return PolicyInvalid(f"{self.source}: {key} {why}")

    def value(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise self.fail(key, "is missing")
            node = node[part]
        return node

    def optional_mapping(self, name: str) -> dict[str, Any]:
        """A top-level section that may be left out: absent or null reads as an empty mapping."""
        section = self.data.get(name)
        if section is None:
            return {}
        if not isinstance(section, dict):
            raise self.fail(name, f"must be a mapping, got {section!r}")
        return section

    def text(self, key: str) -> str:
        return self.text_value(key, self.value(key))

    def text_value(self, key: str, value: Any) -> str:
        """``value`` (found at ``key``) as a non-empty string, stripped."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def matching(self, key: str, pattern: re.Pattern[str], described: str) -> str:
        value = self.text(key)
        if not pattern.match(value):
            raise self.fail(key, f"must be {described}, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum}, got {value}")
        return value

    def number(self, key: str, *, minimum: float) -> float:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self.value(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, enum: type[Enum]) -> Any:
        value = self.text(key)
        try:
            return enum(value)
        except ValueError:
            allowed = " | ".join(member.value for member in enum)
            raise self.fail(key, f"must be one of {allowed}, got {value!r}") from None

    def cron(self, key: str) -> str:
        value = self.text(key)
        self.cron_fields(key, value)
        return value

    def cron_fields(self, key: str, value: Any) -> list[str]:
        """The five fields of the cron expression ``value`` (found at ``key``)."""
        fields = value.split() if isinstance(value, str) else []
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise self.fail(key, f"must be a 5-field cron expression, got {value!r}")
        return fields

    def store_url(self, key: str) -> str:
        value = self.text(key)
        if value.startswith("s3://") and len(value) > len("s3://"):
            return value
        if value.startswith("file:///"):
            return value
        raise self.fail(key, f"must be s3://bucket[/prefix] or file:///absolute/path, got {value!r}")

    def absolute_path(self, key: str) -> str:
        value = self.text(key)
        if not value.startswith("/"):
            raise self.fail(key, f"must be an absolute path, got {value!r}")
        return value

    def relation_names(self, key: str) -> tuple[str, ...]:
        """Relation names as SQL writes them (hms_dr.names): appointments, public."Order Details"."""
        value = self.value(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(key, f"must be a list of names, got {value!r}")
        for item in value:
            try:
                parse_relation_name(item)
            except ValueError as exc:
                raise self.fail(key, str(exc)) from None
            if capitals_outside_quotes(item):
                # SQL folds them to lower case; the author may have meant a mixed-case table.
                raise self.fail(
                    key,
                    f"holds {item!r} with capitals outside double quotes: write it in lower case, "
                    'or quote a mixed-case name ("MixedCase")',
                )
        if len(set(value)) != len(value):
            raise self.fail(key, "lists a name twice")
        return tuple(value)

    def identifiers(self, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        value = self.value(key)
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {value!r}")
        for item in value:
            if not isinstance(item, str) or not pattern.match(item):
                raise self.fail(key, f"holds {item!r}, which is not a plain lower-case SQL identifier")
        if len(set(value)) != len(value):
            raise self.fail(key, "lists a name twice")
        return tuple(value)
