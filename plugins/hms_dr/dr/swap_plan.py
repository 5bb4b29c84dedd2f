"""The swap's plan, decided from catalog rows alone (pure): the statements that exchange restored
tables for production's in one transaction, in order, with every reason the swap cannot be made
(refusals) and every difference worth a look (warnings). ``swap`` reads the rows and runs the plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hms_dr.dr.request import TableName

Column = tuple[str, str, bool]  # name, type, not null


@dataclass(frozen=True)
class Grant:
    grantee: str  # a role, or PUBLIC
    privilege: str
    grantable: bool = False
    column: str | None = None


@dataclass(frozen=True)
class OwnedSequence:
    column: str
    sequence: TableName
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class ForeignKey:
    table: TableName  # the table that holds the constraint
    name: str
    definition: str  # pg_get_constraintdef, schema-qualified


@dataclass(frozen=True)
class DependentView:
    view: TableName
    kind: str  # "v" view, "m" materialized view
    definition: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSide:
    """One table of a pair, as the catalog describes it."""

    table: TableName
    oid: int
    relkind: str = "r"
    owner: str = ""
    partitioned_or_inherited: bool = False
    publications: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    grants: tuple[Grant, ...] = ()
    sequences: tuple[OwnedSequence, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    parts: tuple[tuple[str, str], ...] = ()  # (kind, name): indexes, constraints, triggers, policies


@dataclass(frozen=True)
class SwapTable:
    """A production table, its restored replacement, and what depends on the production one."""

    production: TableSide
    restored: TableSide
    referencing: tuple[ForeignKey, ...] = ()  # other tables' foreign keys to production
    views: tuple[DependentView, ...] = ()
    unhandled: tuple[str, ...] = ()  # other dependants, described by pg_describe_object


@dataclass(frozen=True)
class Statement:
    purpose: str
    sql: str


@dataclass(frozen=True)
class SwapPlan:
    quarantine_schema: str
    staging_schema: str
    tables: tuple[SwapTable, ...]
    statements: tuple[Statement, ...]
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """What the approver approved: every statement, in order."""
        text = "\n".join(f"{s.purpose}\n{s.sql}" for s in self.statements)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def summary(self) -> dict[str, Any]:
        """Plain data for XCom, the approval body and the audit record."""
        return {
            "quarantine_schema": self.quarantine_schema,
            "staging_schema": self.staging_schema,
            "digest": self.digest,
            "tables": [
                {
                    "table": t.production.table.qualified,
                    "restored_from": t.restored.table.qualified,
                    "owner": t.production.owner,
                    "grants": [asdict(g) for g in t.production.grants],
                    "sequences": [s.sequence.qualified for s in t.production.sequences],
                    "foreign_keys": [f.name for f in t.production.foreign_keys],
                    "referencing_foreign_keys": [f"{f.table.qualified}.{f.name}" for f in t.referencing],
                    "views": [v.view.qualified for v in t.views],
                }
                for t in self.tables
            ],
            "statements": [asdict(s) for s in self.statements],
            "refusals": list(self.refusals),
            "warnings": list(self.warnings),
        }


def plan_swap(tables: Sequence[SwapTable], *, quarantine_schema: str, staging_schema: str) -> SwapPlan:
    """The statements of the swap, in order, with every reason it cannot be made."""
    from psycopg import sql

    def ident(name: TableName) -> Any:
        return sql.Identifier(name.schema, name.name)

    def render(purpose: str, statement: Any) -> Statement:
        return Statement(purpose, statement.as_string(None))

    refusals: list[str] = []
    warnings: list[str] = []
    for pair in tables:
        refusals.extend(refusals_of(pair, staging_schema))
        warnings.extend(_warnings(pair))
    swapped = {pair.production.table for pair in tables}

    statements = [
        render(
            f"quarantine schema {quarantine_schema}",
            sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(quarantine_schema)),
        )
    ]
    for pair in tables:
        for fk in pair.referencing:
            statements.append(
                render(
                    f"detach foreign key {fk.name} of {fk.table.qualified} from {pair.production.table.qualified}",
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident(fk.table), sql.Identifier(fk.name)),
                )
            )
    for pair in tables:
        statements.append(
            render(
                f"move {pair.production.table.qualified} into {quarantine_schema}",
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    ident(pair.production.table), sql.Identifier(quarantine_schema)
                ),
            )
        )
    for pair in tables:
        statements.append(
            render(
                f"move restored {pair.restored.table.qualified} into {pair.production.table.schema}",
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    ident(pair.restored.table), sql.Identifier(pair.production.table.schema)
                ),
            )
        )
    for pair in tables:
        statements.extend(_ownership_and_grants(pair, quarantine_schema, render))
    for pair in tables:
        restored_fk_names = {fk.name for fk in pair.restored.foreign_keys}
        for fk in pair.production.foreign_keys:
            if fk.name in restored_fk_names:
                continue  # the restored table already has it (warned about)
            statements.append(
                render(
                    f"foreign key {fk.name} of {pair.production.table.qualified}",
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        ident(pair.production.table), sql.Identifier(fk.name), sql.SQL(fk.definition)
                    ),
                )
            )
    for pair in tables:
        for fk in pair.referencing:
            if fk.table in swapped:
                continue
            statements.append(
                render(
                    f"re-attach foreign key {fk.name} of {fk.table.qualified} to the restored {pair.production.table.qualified}",
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        ident(fk.table), sql.Identifier(fk.name), sql.SQL(fk.definition)
                    ),
                )
            )
    seen_views: set[TableName] = set()
    for pair in tables:
        for view in pair.views:
            if view.kind != "v" or view.view in seen_views:
                continue
            seen_views.add(view.view)
            options: Any = sql.SQL("")
            if view.options:
                options = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(sql.SQL(option) for option in view.options))
            statements.append(
                render(
                    f"view {view.view.qualified} reads the restored table",
                    sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                        ident(view.view), options, sql.SQL(view.definition.strip().rstrip(";"))
                    ),
                )
            )
    return SwapPlan(
        quarantine_schema, staging_schema, tuple(tables), tuple(statements), tuple(refusals), tuple(warnings)
    )


def _ownership_and_grants(pair: SwapTable, quarantine_schema: str, render: Any) -> list[Statement]:
    from psycopg import sql

    table = pair.production.table
    target = sql.Identifier(table.schema, table.name)
    out = []
    if pair.production.owner:
        out.append(
            render(
                f"owner of {table.qualified}",
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(target, sql.Identifier(pair.production.owner)),
            )
        )
    for grant in pair.production.grants:
        out.append(render(f"grant on {table.qualified}", _grant(grant, sql.SQL("TABLE {}").format(target))))
    restored_sequences = {s.column: s.sequence for s in pair.restored.sequences}
    for old in pair.production.sequences:
        new = restored_sequences.get(old.column)
        if new is None:
            continue  # a refusal says why
        new_name = TableName(table.schema, new.name)  # it moved in with its table
        new_ident = sql.Identifier(new_name.schema, new_name.name)
        for grant in old.grants:
            out.append(
                render(
                    f"grant on sequence {new_name.qualified}", _grant(grant, sql.SQL("SEQUENCE {}").format(new_ident))
                )
            )
        quarantined = sql.Identifier(quarantine_schema, old.sequence.name)
        # Never hand out again an id production already used: at least the old sequence's last
        # value (and the column's maximum); greatest() skips the NULL of a never-used sequence.
        out.append(
            render(
                f"sequence {new_name.qualified} continues after {quarantine_schema}.{old.sequence.name}",
                sql.SQL(
                    "SELECT pg_catalog.setval({new}::pg_catalog.regclass, s.v) FROM (SELECT GREATEST(pg_catalog.max({column}), "
                    "pg_catalog.pg_sequence_last_value({old}::pg_catalog.regclass)) AS v FROM {table}) AS s WHERE s.v IS NOT NULL"
                ).format(
                    new=sql.Literal(new_ident.as_string(None)),
                    column=sql.Identifier(old.column),
                    old=sql.Literal(quarantined.as_string(None)),
                    table=target,
                ),
            )
        )
    return out


def _grant(grant: Grant, on: Any) -> Any:
    from psycopg import sql

    privilege: Any = sql.SQL(grant.privilege)
    if grant.column is not None:
        privilege = sql.SQL("{} ({})").format(privilege, sql.Identifier(grant.column))
    grantee = sql.SQL("PUBLIC") if grant.grantee == "PUBLIC" else sql.Identifier(grant.grantee)
    option = sql.SQL(" WITH GRANT OPTION") if grant.grantable else sql.SQL("")
    return sql.SQL("GRANT {} ON {} TO {}{}").format(privilege, on, grantee, option)


def refusals_of(pair: SwapTable, staging_schema: str) -> list[str]:
    production, restored = pair.production, pair.restored
    name = production.table.qualified
    out = []
    if restored.table.schema != staging_schema or restored.table.name != production.table.name:
        out.append(f"{restored.table.qualified} is not {production.table.name} in the staging schema {staging_schema}")
    for side in (production, restored):
        if side.relkind != "r":
            out.append(f"{side.table.qualified} is not a plain table (relkind {side.relkind})")
        if side.partitioned_or_inherited:
            out.append(f"{side.table.qualified} is partitioned or takes part in inheritance: swap it by hand")
    if production.publications:
        out.append(
            f"{name} is published ({', '.join(production.publications)}): a swapped table would leave the publication"
        )
    if [c[:2] for c in production.columns] != [c[:2] for c in restored.columns]:
        out.append(
            f"{name} has columns {_columns(production.columns)} in production but {_columns(restored.columns)} restored"
        )
    restored_sequences = {s.column for s in restored.sequences}
    for sequence in production.sequences:
        if sequence.column not in restored_sequences:
            out.append(
                f"{name}.{sequence.column} takes its values from {sequence.sequence.qualified}, the restored column from none"
            )
    for view in pair.views:
        if view.kind != "v":
            out.append(
                f"materialized view {view.view.qualified} reads {name}: refresh-safe swap not supported, recreate it by hand"
            )
    for description in pair.unhandled:
        out.append(f"{description} depends on {name} and would stay with the quarantined table")
    return out


def _warnings(pair: SwapTable) -> list[str]:
    name = pair.production.table.qualified
    out = []
    production_parts, restored_parts = set(pair.production.parts), set(pair.restored.parts)
    for kind, part in sorted(production_parts - restored_parts):
        out.append(
            f"{kind} {part} of production's {name} is not on the restored table (it was created after the backup)"
        )
    for kind, part in sorted(restored_parts - production_parts):
        out.append(f"{kind} {part} of the restored {name} is no longer on production's table")
    production_fks = {fk.name for fk in pair.production.foreign_keys}
    for fk in pair.restored.foreign_keys:
        if fk.name in production_fks:
            out.append(f"the restored {name} already has foreign key {fk.name}: kept as restored")
    return out


def _columns(columns: Sequence[Column]) -> str:
    return "(" + ", ".join(f"{c[0]} {c[1]}" for c in columns) + ")"


def grant_key(grant: Grant) -> str:
    column = f"({grant.column})" if grant.column else ""
    return f"{grant.privilege}{column} to {grant.grantee}{' with grant option' if grant.grantable else ''}"


def grant_keys(grants: Sequence[Grant]) -> list[str]:
    return sorted(grant_key(g) for g in grants)
