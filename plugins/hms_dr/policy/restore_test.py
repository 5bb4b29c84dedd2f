"""The policy's ``restore_test:`` section: whether every backup is restore-tested, what is restored
(logical, physical or both), the smoke queries asked of every restored copy, and the server an
upgrade rehearsal restores into.

An upgrade rehearsal (the DAG's ``upgrade_rehearsal`` param) restores the daily set into a server
of a NEWER PostgreSQL major than production's and holds it to the same exact baselines: what a
hospital wants to know before upgrading. That server is a Connection of its own
(``restore_test.upgrade_rehearsal_connection_id``), isolated from production like the normal
restore target; without one, no rehearsal can be asked for.

Smoke queries are the application's own questions. The policy lists them under
``restore_test.smoke_queries`` as ``{name, sql}``; a restore test passes only if each runs on the
restored database. They are the operator's SQL, so the policy accepts only a single read-only
statement (SELECT, WITH, VALUES or TABLE, with no data-modifying keyword outside quotes);
``check-policy`` runs them in a READ ONLY transaction too, which is the guard that cannot be fooled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hms_dr.policy.reader import PolicyReader

# Quoted parts first, so keywords and semicolons inside them are not seen: '...' (with '' and,
# for E'...', \' escapes), "..." identifiers, $tag$...$tag$ bodies, -- and /* */ comments.
_QUOTED_OR_COMMENT = re.compile(
    r"""(?:[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|(\$[A-Za-z_0-9]*\$).*?\1|--[^\n]*|/\*.*?\*/)""",
    re.S,
)
_READ_ONLY_START = ("select", "with", "values", "table")
# INTO: SELECT ... INTO creates a table. FOR UPDATE/SHARE are refused with UPDATE (they take locks).
_WRITING_KEYWORDS = re.compile(
    r"\b(insert|update|delete|merge|into|truncate|copy|call|do|create|alter|drop|grant|lock|nextval|setval)\b", re.I
)
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


def parse_smoke_queries(reader: PolicyReader) -> tuple[SmokeQuery, ...]:
    """``restore_test.smoke_queries``: absent or empty means none are run."""
    key = "restore_test.smoke_queries"
    section = reader.data.get("restore_test")
    value: Any = section.get("smoke_queries") if isinstance(section, dict) else None
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader.fail(key, f"must be a list of {{name, sql}}, got {value!r}")
    queries: list[SmokeQuery] = []
    for number, item in enumerate(value, start=1):
        where = f"{key}[{number}]"
        if not isinstance(item, dict) or set(item) - {"name", "sql"}:
            raise reader.fail(where, f"must be a mapping with keys name and sql, got {item!r}")
        name, statement = item.get("name"), item.get("sql")
        if not isinstance(name, str) or not _NAME.match(name.strip()):
            raise reader.fail(where, f"needs a name (one line, at most 80 characters), got {name!r}")
        if not isinstance(statement, str) or not statement.strip():
            raise reader.fail(where, f"({name.strip()!r}) needs a non-empty sql, got {statement!r}")
        problem = read_only_problem(statement)
        if problem:
            raise reader.fail(where, f"({name.strip()!r}) sql {problem}: a smoke query is one read-only statement")
        queries.append(SmokeQuery(name.strip(), statement.strip().rstrip(";").strip()))
    names = [q.name for q in queries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise reader.fail(key, f"names {duplicates[0]!r} twice: each smoke query needs a name of its own")
    return tuple(queries)


class RestoreTestMode(StrEnum):
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
    # The application's own queries, run on every restored copy; none by default.
    smoke_queries: tuple[SmokeQuery, ...] = ()
    # postgres Connection to a restore-target server of a newer major (a role that may CREATE
    # DATABASE there), for upgrade rehearsals; None: rehearsals are refused.
    upgrade_rehearsal_connection_id: str | None = None


def parse_restore_test(reader: PolicyReader) -> RestoreTestPolicy:
    """The ``restore_test:`` section; mode, smoke_queries and upgrade_rehearsal_connection_id are optional."""
    section = reader.data["restore_test"]
    return RestoreTestPolicy(
        on_every_backup=reader.boolean("restore_test.on_every_backup"),
        restore_jobs=reader.integer("restore_test.restore_jobs", minimum=1, maximum=16),
        mode=reader.choice("restore_test.mode", RestoreTestMode) if "mode" in section else RestoreTestPolicy.mode,
        smoke_queries=parse_smoke_queries(reader),
        upgrade_rehearsal_connection_id=(
            reader.text("restore_test.upgrade_rehearsal_connection_id")
            if section.get("upgrade_rehearsal_connection_id") is not None
            else None
        ),
    )
