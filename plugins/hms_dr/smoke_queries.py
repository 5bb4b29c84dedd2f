"""Smoke queries: the application's own questions, asked of every restored copy.

The policy lists them under ``restore_test.smoke_queries`` as ``{name, sql}``; a restore test
passes only if each runs on the restored database. They are the operator's SQL, so the policy
accepts only a single read-only statement (SELECT, WITH, VALUES or TABLE, with no data-modifying
keyword outside quotes); ``check-policy`` runs them in a READ ONLY transaction too, which is the
guard that cannot be fooled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hms_dr.policy import _Reader

# Quoted parts first, so keywords and semicolons inside them are not seen: '...' (with '' and,
# for E'...', \' escapes), "..." identifiers, $tag$...$tag$ bodies, -- and /* */ comments.
_QUOTED_OR_COMMENT = re.compile(
    r"""(?:[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|(\$[A-Za-z_0-9]*\$).*?\1|--[^\n]*|/\*.*?\*/)""",
    re.S,
)
_READ_ONLY_START = ("select", "with", "values", "table")
# INTO: SELECT ... INTO creates a table. FOR UPDATE/SHARE are refused with UPDATE (they take locks).
_WRITING_KEYWORDS = re.compile(r"\b(insert|update|delete|merge|into|truncate|copy|call|do|create|alter|drop|grant|lock|nextval|setval)\b", re.I)
_NAME = re.compile(r"^[^\n\r]{1,80}$")


@dataclass(frozen=True)
class SmokeQuery:
    """One smoke query: a name for the report and the single read-only statement it runs."""

    name: str
    sql: str


def read_only_problem(statement: str) -> str | None:
    """Why ``statement`` is not one read-only statement, or None when it looks like one (a pure,
    cheap lexical check; the READ ONLY transaction in check-policy is the strict one)."""
    bare = _QUOTED_OR_COMMENT.sub(" ", statement).strip().rstrip(";").strip()
    if not bare:
        return "is empty"
    if ";" in bare:
        return "holds more than one statement"
    first = bare.split(None, 1)[0].lower()
    if first not in _READ_ONLY_START:
        return f"must start with SELECT, WITH, VALUES or TABLE, not {first.upper()}"
    writing = _WRITING_KEYWORDS.search(bare)
    if writing:
        return f"is not read-only: it uses {writing.group(1).upper()}"
    return None


def parse_smoke_queries(reader: _Reader) -> tuple[SmokeQuery, ...]:
    """``restore_test.smoke_queries``: absent or empty means none are run."""
    key = "restore_test.smoke_queries"
    section = reader.data.get("restore_test")
    value: Any = section.get("smoke_queries") if isinstance(section, dict) else None
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader._fail(key, f"must be a list of {{name, sql}}, got {value!r}")
    queries: list[SmokeQuery] = []
    for number, item in enumerate(value, start=1):
        where = f"{key}[{number}]"
        if not isinstance(item, dict) or set(item) - {"name", "sql"}:
            raise reader._fail(where, f"must be a mapping with keys name and sql, got {item!r}")
        name, statement = item.get("name"), item.get("sql")
        if not isinstance(name, str) or not _NAME.match(name.strip()):
            raise reader._fail(where, f"needs a name (one line, at most 80 characters), got {name!r}")
        if not isinstance(statement, str) or not statement.strip():
            raise reader._fail(where, f"({name.strip()!r}) needs a non-empty sql, got {statement!r}")
        problem = read_only_problem(statement)
        if problem:
            raise reader._fail(where, f"({name.strip()!r}) sql {problem}: a smoke query is one read-only statement")
        queries.append(SmokeQuery(name.strip(), statement.strip().rstrip(";").strip()))
    names = [q.name for q in queries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise reader._fail(key, f"names {duplicates[0]!r} twice: each smoke query needs a name of its own")
    return tuple(queries)
