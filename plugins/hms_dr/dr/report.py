"""What the approver reads before a swap (the ApprovalOperator's body, Markdown), built from the
swap's plan and the row counts: exactly which tables change, how many rows each has now and
restored, what follows them (foreign keys, views, grants, sequences), and every statement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_STATEMENTS_SHOWN = 60
MAX_STATEMENT_CHARS = 400


def describe_source(plan: Mapping[str, Any]) -> str:
    if plan["source"] == "point_in_time":
        target = plan.get("recovery_target") or {}
        return f"a scratch cluster recovered to {target.get('kind')} {target.get('value')}"
    return f"logical backup set {plan.get('backup_set_id')}"


def approval_body(
    plan: Mapping[str, Any],
    swap: Mapping[str, Any],
    *,
    rows_now: Mapping[str, int | None],
    rows_restored: Mapping[str, int | None],
    checks: Mapping[str, Any] | None,
    triggered_by: str,
    run_id: str,
    measured_at: str,
) -> str:
    """The Markdown body: the request, the counts, the swap step by step, warnings, statements."""
    lines = [
        f"**{run_id}**, triggered by **{_md(triggered_by)}**. Reason: _{_md(plan['reason'])}_",
        "",
        f"Restored from {describe_source(plan)} into the staging schema `{plan['staging_schema']}`.",
        _checks_line(checks),
        "",
        f"Row counts at {measured_at}:",
        "",
        "| table | production now | restored | difference |",
        "|---|---:|---:|---:|",
    ]
    for table in swap["tables"]:
        name = table["table"]
        now, restored = rows_now.get(name), rows_restored.get(name)
        diff = "" if now is None or restored is None else f"{restored - now:+,}"
        lines.append(f"| `{name}` | {_n(now)} | {_n(restored)} | {diff} |")
    quarantine = swap["quarantine_schema"]
    lines += [
        "",
        "**Approve** runs the swap in ONE transaction (all of it or nothing):",
        "",
        f"1. new schema `{quarantine}`; each table above moves there with all its rows — nothing is dropped;",
        f"2. the restored table moves from `{plan['staging_schema']}` into its place, same name;",
    ]
    for table in swap["tables"]:
        grants = ", ".join(
            f"{g['privilege']}{'(' + g['column'] + ')' if g.get('column') else ''} to {g['grantee']}"
            for g in table["grants"]
        )
        follows = []
        if table["referencing_foreign_keys"]:
            follows.append("foreign keys " + ", ".join(f"`{k}`" for k in table["referencing_foreign_keys"]))
        if table["views"]:
            follows.append("views " + ", ".join(f"`{v}`" for v in table["views"]))
        lines.append(
            f"   - `{table['table']}`: owner `{table['owner']}`, grants {grants or 'none besides the owner'}; "
            f"own foreign keys {', '.join(table['foreign_keys']) or 'none'}; sequences {', '.join(table['sequences']) or 'none'} "
            "continue after the ids already used"
        )
        if follows:
            lines.append(
                f"     then {' and '.join(follows)} are re-pointed from the quarantined table to the restored one, validated"
            )
    lines += [
        "",
        f"**Reject** leaves production as it is; the restored tables stay in `{plan['staging_schema']}` for inspection.",
    ]
    if swap.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {_md(w)}" for w in swap["warnings"]]
    if swap.get("refusals"):
        lines += ["", "**The swap cannot be made:**", ""] + [f"- {_md(r)}" for r in swap["refusals"]]
    statements: Sequence[Mapping[str, str]] = swap.get("statements", [])
    lines += [
        "",
        f"The {len(statements)} statements (plan digest `{swap['digest'][:16]}`: the swap refuses to run any other):",
        "",
        "```sql",
    ]
    for statement in statements[:MAX_STATEMENTS_SHOWN]:
        text = statement["sql"]
        if len(text) > MAX_STATEMENT_CHARS:
            text = text[:MAX_STATEMENT_CHARS] + " …"
        lines.append(f"-- {statement['purpose']}\n{text};")
    if len(statements) > MAX_STATEMENTS_SHOWN:
        lines.append(f"-- ... and {len(statements) - MAX_STATEMENTS_SHOWN} more")
    lines.append("```")
    return "\n".join(lines)


def _checks_line(checks: Mapping[str, Any] | None) -> str:
    if not checks:
        return "Quality checks: not run (run_quality_checks was false)."
    failed = checks.get("failed") or []
    total = len(checks.get("checks") or [])
    line = f"Quality checks: {total - len(failed)} of {total} passed."
    if checks.get("note"):
        line += f" ({checks['note']})"
    return line


def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _md(text: str) -> str:
    """Plain text inside Markdown: no markup, links or HTML from an operator's free text."""
    out = str(text).replace("\r", " ").replace("\n", " ")
    for char in "\\`*_{}[]()<>#|!":
        out = out.replace(char, "\\" + char)
    return out
