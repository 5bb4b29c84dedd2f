"""The restore request: what an operator asked ``hms_dr_restore`` for, validated twice.

The trigger form validates each param on its own (patterns, enums: HTTP 400 before a run
exists); ``parse_request`` validates them again, together, in the first task: an identifier is
accepted only as plain ASCII ``[a-z_][a-z0-9_]*`` (no quote, no ``;``, no look-alike letter from
another alphabet, no trailing newline), and combinations that make no sense are refused. A table
is named as SQL writes it (``appointments``, ``public."Order Details"``, ``"MixedCase"``: see
``hms_dr.names``), and must then be one of the set's tables, matched on the catalog's own
(schema, name), so a look-alike name finds no table.
``resolve_request`` then checks the request against facts read from the store and production
(the set's tables, existing schemas and databases): a table not in the set, a staging schema that
already exists, a target database that is production or already holds data. Both are pure: they
take the facts (and the time) and return a plan, or raise one RequestRefused naming every problem:
everything they refuse is the request's to fix, so it fails the run without paging anyone.

Restoring every table is asked for explicitly, with ``all_tables``; an empty ``tables`` list alone
is refused (a typo such as ``table`` left it empty once, and restored the whole database).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from hms_dr import patterns
from hms_dr.errors import ParamInvalid, RequestRefused
from hms_dr.names import (
    SPELLING_RULE,
    capitals_outside_quotes,
    parse_relation_name,
    relation_key,
    spell_identifier,
    split_relation_key,
    sql_spelling,
)
from hms_dr.patterns import matcher
from hms_dr.physical.targets import parse_recovery_target, refuse_future_target

IDENTIFIER = matcher(patterns.IDENTIFIER)
BACKUP_ID = matcher(patterns.BACKUP_ID)
IDENTIFIER_RULE = "plain lower-case ASCII letters, digits and _ (not starting with a digit, at most 63)"

QUARANTINE_PREFIX = "dr_quarantine_"
STAGING_PREFIX = "dr_staging_"
NEW_DATABASE_PREFIX = "dr_restore_"
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})
MIN_REASON_CHARS = 10
MAX_REASON_CHARS = 2000
MAX_TABLES = 100
_REASON_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PITR_TARGET_PARAMS = {"target_time": "time", "target_lsn": "lsn", "target_restore_point": "name"}


class Source(StrEnum):
    LOGICAL_BACKUP = "logical_backup"  # a daily pg_dump set
    POINT_IN_TIME = "point_in_time"  # a base backup plus WAL, recovered to a target


class TargetKind(StrEnum):
    STAGING_SCHEMA = "staging_schema"  # a new schema in production's database: the swap's input
    NEW_DATABASE = "new_database"  # a new database on the production server; never swapped


@dataclass(frozen=True, order=True)
class TableName:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        """The schema.name key, as baselines and plans hold it (hms_dr.names)."""
        return relation_key(self.schema, self.name)

    @property
    def spelled(self) -> str:
        """As SQL writes it, e.g. public."Order Details": what an operator types in the form."""
        return sql_spelling(self.schema, self.name)

    @classmethod
    def parse(cls, qualified: str) -> TableName:
        """From a schema.name key (never from what an operator typed: see resolve_request)."""
        return cls(*split_relation_key(qualified))


@dataclass(frozen=True)
class RestoreRequest:
    """The params, checked one by one and together (nothing looked up yet)."""

    source: Source
    backup_id: str  # "latest" or a set id: the logical set, or for point_in_time the base backup set to start from
    recovery_target: Mapping[str, Any] | None  # RecoveryTarget.to_dict() for point_in_time
    tables: tuple[
        str, ...
    ]  # as given, in SQL spelling: name, schema.name, public."Order Details"; empty exactly when all_tables
    all_tables: bool  # every table of the set (or of production, for a point in time)
    target_kind: TargetKind
    target_database: str | None  # new_database
    staging_schema: str | None  # staging_schema
    quarantine_schema: str
    run_quality_checks: bool
    swap_into_production: bool
    reason: str


@dataclass(frozen=True)
class TargetFacts:
    """What production looks like where the restore would land (read by the tasks layer)."""

    production_database: str
    production_tables: frozenset[str]  # qualified
    existing_schemas: frozenset[str]
    target_database_exists: bool = False
    target_database_tables: int = 0  # user relations in it, when it exists


@dataclass(frozen=True)
class RestorePlan:
    """A request resolved against the set (or production) and the target: what will happen."""

    request: RestoreRequest
    tables: tuple[TableName, ...]  # what is restored, as named in the source
    whole_database: bool
    backup_set_id: str | None  # the logical set (resolved from "latest")
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        r = self.request
        return {
            "source": r.source.value,
            "backup_id": r.backup_id,
            "backup_set_id": self.backup_set_id,
            "recovery_target": dict(r.recovery_target) if r.recovery_target else None,
            "tables": [t.qualified for t in self.tables],
            "whole_database": self.whole_database,
            "target_kind": r.target_kind.value,
            "target_database": r.target_database,
            "staging_schema": r.staging_schema,
            "quarantine_schema": r.quarantine_schema,
            "run_quality_checks": r.run_quality_checks,
            "swap_into_production": r.swap_into_production,
            "reason": r.reason,
            "notes": list(self.notes),
        }


def run_key(run_id: str) -> str:
    """A run id as an identifier suffix: lower-case, every other character '_', at most 40
    characters (longer ids keep their start and get a hash), e.g. manual__2026_11_24t14_05_00_00_00."""
    key = re.sub(r"[^a-z0-9]", "_", run_id.lower())
    if len(key) > 40:
        key = f"{key[:31]}_{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"
    return key


def quarantine_schema_for(run_id: str) -> str:
    return QUARANTINE_PREFIX + run_key(run_id)


def parse_request(params: Mapping[str, Any], *, run_id: str, now: datetime) -> RestoreRequest:
    """The params as a RestoreRequest; RequestRefused lists every problem found, in one line.
    ``now`` refuses a point-in-time target in the future."""
    problems: list[str] = []
    source = _enum(params.get("source", Source.LOGICAL_BACKUP.value), Source, "source", problems)
    target_kind = _enum(params.get("target_kind", TargetKind.STAGING_SCHEMA.value), TargetKind, "target_kind", problems)

    backup_id = params.get("backup_id")
    backup_id = "latest" if backup_id in (None, "") else backup_id
    if not isinstance(backup_id, str) or not BACKUP_ID.fullmatch(backup_id):
        problems.append(f"backup_id must be 'latest' or a set id like 20261124T020001Z, got {backup_id!a}")

    recovery_target = _recovery_target(params, source, now, problems)
    problems_before = len(problems)
    tables = _tables(params.get("tables"), problems)
    tables_malformed = len(problems) > problems_before  # already named: "empty" would only add noise
    all_tables = _boolean(params.get("all_tables", False), "all_tables", problems)
    if all_tables and tables:
        problems.append(
            "all_tables restores every table, so tables must be empty: name the tables and turn all_tables off, or clear tables"
        )
    elif not all_tables and not tables and not tables_malformed:
        problems.append(
            "tables is empty: name the tables to restore (e.g. appointments), or set all_tables to restore every table"
        )

    staging_schema = _optional_identifier(params.get("staging_schema"), "staging_schema", problems)
    target_database = _optional_identifier(params.get("target_database"), "target_database", problems)
    if target_kind is TargetKind.STAGING_SCHEMA:
        if target_database is not None:
            problems.append(
                "target_database applies to target_kind new_database only; leave it empty for staging_schema"
            )
        staging_schema = staging_schema or STAGING_PREFIX + run_key(run_id)
        if staging_schema in RESERVED_SCHEMAS or staging_schema.startswith(("pg_", QUARANTINE_PREFIX)):
            problems.append(
                f"staging_schema {staging_schema!r} is reserved: choose a new schema name (e.g. {STAGING_PREFIX}appointments)"
            )
    elif target_kind is TargetKind.NEW_DATABASE:
        if staging_schema is not None:
            problems.append(
                "staging_schema applies to target_kind staging_schema only; leave it empty for new_database"
            )
        target_database = target_database or NEW_DATABASE_PREFIX + run_key(run_id)
        if target_database in RESERVED_DATABASES:
            problems.append(f"target_database {target_database!r} is a system database: choose a new database name")

    run_checks = _boolean(params.get("run_quality_checks", True), "run_quality_checks", problems)
    swap = _boolean(params.get("swap_into_production", False), "swap_into_production", problems)
    if swap and target_kind is TargetKind.NEW_DATABASE:
        problems.append(
            "swap_into_production needs target_kind staging_schema: a new database is never swapped into production"
        )

    reason = _reason(params.get("reason"), problems)
    if problems:
        raise RequestRefused("; ".join(problems))
    assert source is not None and target_kind is not None and isinstance(backup_id, str)
    return RestoreRequest(
        source=source,
        backup_id=backup_id,
        recovery_target=recovery_target,
        tables=tables,
        all_tables=all_tables,
        target_kind=target_kind,
        target_database=target_database,
        staging_schema=staging_schema,
        quarantine_schema=quarantine_schema_for(run_id),
        run_quality_checks=run_checks,
        swap_into_production=swap,
        reason=reason,
    )


def resolve_request(
    request: RestoreRequest,
    facts: TargetFacts,
    *,
    set_tables: Sequence[str] | None,
    backup_set_id: str | None,
    where: str,
) -> RestorePlan:
    """Check the request against what exists. ``set_tables`` are the logical set's baseline
    tables (None for point_in_time: then production's tables are the candidates); ``where``
    names the set or production in messages."""
    problems: list[str] = []
    every = sorted(set(set_tables) if set_tables is not None else facts.production_tables)
    # Tables earlier DR runs left in staging and quarantine schemas are restored only when named
    # with their schema: "appointments" means production's table, not a quarantined copy.
    candidates = [name for name in every if not is_dr_schema(TableName.parse(name).schema)]
    tables = [_resolve_table(name, every, candidates, where, problems) for name in request.tables]
    resolved = [t for t in tables if t is not None]
    whole = request.all_tables
    if whole:
        resolved = [TableName.parse(name) for name in candidates]
        if not resolved:
            problems.append(f"{where} holds no table to restore")

    if request.target_kind is TargetKind.STAGING_SCHEMA:
        assert request.staging_schema is not None
        if request.staging_schema in facts.existing_schemas:
            problems.append(
                f"staging schema {request.staging_schema!r} already exists in {facts.production_database}: "
                "choose a new name (a restore never writes into existing objects)"
            )
        if request.staging_schema in {t.schema for t in resolved}:
            problems.append(f"staging schema {request.staging_schema!r} is where the tables live: choose a new name")
        seen: dict[str, TableName] = {}
        for table in resolved:
            other = seen.setdefault(table.name, table)
            if other != table:
                problems.append(
                    f"{other.qualified} and {table.qualified} would both be {table.name} in the staging schema: restore them in two runs"
                )
    else:
        assert request.target_database is not None
        if request.target_database == facts.production_database:
            problems.append(f"target_database {request.target_database!r} is the production database: refused")
        elif facts.target_database_exists and facts.target_database_tables:
            problems.append(
                f"target_database {request.target_database!r} already exists and holds {facts.target_database_tables} "
                "relation(s): choose a new name (a restore never writes into existing data)"
            )
    if request.quarantine_schema in facts.existing_schemas:
        problems.append(f"quarantine schema {request.quarantine_schema!r} already exists: trigger a new run")
    if request.swap_into_production:
        for table in resolved:
            if table.qualified not in facts.production_tables:
                problems.append(
                    f"{table.qualified} does not exist in production, so there is nothing to swap: restore it without "
                    "swap_into_production and move it by hand"
                )
    if problems:
        raise RequestRefused("; ".join(problems))
    notes = []
    if request.source is Source.POINT_IN_TIME:
        notes.append(
            "point in time: no baselines exist for that moment; restored columns are compared with production and row counts reported"
        )
    return RestorePlan(
        request=request,
        tables=tuple(sorted(resolved)),
        whole_database=whole,
        backup_set_id=backup_set_id,
        notes=tuple(notes),
    )


def is_dr_schema(schema: str) -> bool:
    """A schema a DR run made (staging or quarantine, default names)."""
    return schema.startswith((QUARANTINE_PREFIX, STAGING_PREFIX))


def _resolve_table(
    given: str, every: Sequence[str], candidates: Sequence[str], where: str, problems: list[str]
) -> TableName | None:
    """The table ``given`` names: with its schema, any of ``every``; without, the one of that name
    among ``candidates``. Compared as (schema, name) pairs, never as text."""
    spelled = parse_relation_name(given)  # _tables accepted it
    if spelled.schema is not None:
        wanted = TableName(spelled.schema, spelled.name)
        if wanted in {TableName.parse(c) for c in every}:
            return wanted
        problems.append(f"table {given!r} is not in {where}{_listing(candidates)}")
        return None
    matches = [TableName.parse(c) for c in candidates if TableName.parse(c).name == spelled.name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        problems.append(f"table {given!r} is not in {where}{_listing(candidates)}")
    else:
        problems.append(f"table {given!r} is ambiguous in {where}: name one of {', '.join(m.spelled for m in matches)}")
    return None


def _listing(candidates: Sequence[str]) -> str:
    if not candidates:
        return ""
    shown = ", ".join(spell_identifier(TableName.parse(c).name) for c in candidates[:12])
    return f" (its tables: {shown}{', ...' if len(candidates) > 12 else ''})"


def _enum(value: Any, kind: type[Enum], name: str, problems: list[str]) -> Any:
    try:
        return kind(value)
    except ValueError:
        problems.append(f"{name} must be one of {', '.join(str(k.value) for k in kind)}, got {value!a}")
        return None


def _boolean(value: Any, name: str, problems: list[str]) -> bool:
    if not isinstance(value, bool):
        problems.append(f"{name} must be true or false, got {value!a}")
        return False
    return value


def check_identifier(value: Any, what: str) -> str | None:
    """The problem with an identifier an operator typed, or None. ``!a`` shows a look-alike
    letter from another alphabet as its escape (``'\\u0430ppointments'``)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        return f"{what} {value!a} is not a plain identifier ({IDENTIFIER_RULE})"
    return None


def _optional_identifier(value: Any, what: str, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    problem = check_identifier(value, what)
    if problem:
        problems.append(problem)
        return None
    return str(value)


def _tables(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = _split_table_list(value)
    if not isinstance(value, (list, tuple)):
        problems.append(f"tables must be a list of table names, got {value!a}")
        return ()
    if len(value) > MAX_TABLES:
        problems.append(f"tables names {len(value)} tables; at most {MAX_TABLES} per run")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str):
            problems.append(f"table {item!a} is not a table name ({SPELLING_RULE})")
            continue
        try:
            parse_relation_name(item)
        except ValueError as exc:
            problems.append(f"table {exc}")
            continue
        if capitals_outside_quotes(item):
            # SQL would fold them; in a DR the operator may mean a mixed-case table: ask.
            problems.append(
                f"table {item!a} has capitals outside double quotes: write {item.lower()!a}, or quote a "
                'mixed-case name ("MixedCase")'
            )
            continue
        if item not in names:
            names.append(item)
    return tuple(names)


def _split_table_list(text: str) -> list[str]:
    """Names in one text, separated by commas, spaces or new lines outside double quotes
    (``public."Order Details", appointments``)."""
    names: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted  # a doubled quote inside a name toggles twice: still inside
        if not quoted and (char == "," or char.isspace()):
            if current:
                names.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        names.append("".join(current))
    return names


def _recovery_target(
    params: Mapping[str, Any], source: Source | None, now: datetime, problems: list[str]
) -> dict[str, Any] | None:
    given = {name: params.get(name) for name in PITR_TARGET_PARAMS if params.get(name) not in (None, "")}
    if source is not Source.POINT_IN_TIME:
        if given:
            problems.append(
                f"{', '.join(sorted(given))} appl{'ies' if len(given) == 1 else 'y'} to source point_in_time only"
            )
        return None
    if len(given) != 1:
        problems.append(
            "source point_in_time needs exactly one of target_time, target_lsn, target_restore_point"
            + (f" (got {', '.join(sorted(given))})" if given else "")
        )
        return None
    ((name, value),) = given.items()
    if not isinstance(value, str):
        problems.append(f"{name} must be text, got {value!a}")
        return None
    try:
        target = parse_recovery_target(PITR_TARGET_PARAMS[name], value)
        refuse_future_target(target, now)
        return target.to_dict()
    except ParamInvalid as exc:
        problems.append(exc.message)
        return None


def _reason(value: Any, problems: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.append("reason is required: say why production data is being restored (it goes into the audit record)")
        return ""
    reason = value.strip()
    if len(reason) < MIN_REASON_CHARS:
        problems.append(f"reason {reason!a} is too short: at least {MIN_REASON_CHARS} characters for the audit record")
    elif len(reason) > MAX_REASON_CHARS:
        problems.append(f"reason is {len(reason)} characters: at most {MAX_REASON_CHARS}")
    if _REASON_CONTROL.search(reason):
        problems.append("reason contains a control character")
    return reason
