"""Verdicts and reports of a restore check: each planned check with its GX result becomes one
row (expected, observed, passed, a one-line message naming the table or view), written out as
``summary.json`` and a self-contained ``report.html`` an auditor can open from disk.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hms_dr.quality.plan import CheckKind, PlannedCheck


def judge(check: PlannedCheck, result: Any | None) -> dict[str, Any]:
    """The report row of one check, from its GX validation result (None: decided by the survey)."""
    if check.expectation is None:
        observed, message = _surveyed(check)
        return _row(check, observed, False, message)
    if result is None:
        return _row(check, None, False, f"{_subject(check)}: Great Expectations returned no result for this check")
    error = _exception_message(result)
    if error:
        return _row(check, None, False, f"{_subject(check)} could not be checked: {error}")
    passed = bool(result.success)
    observed, message = _VERDICTS[check.kind](check, dict(result.result or {}), passed)
    return _row(check, observed, passed, message)


def _row(check: PlannedCheck, observed: Any, passed: bool, message: str) -> dict[str, Any]:
    return {
        "check": check.kind.value,
        "target": check.target,
        "expected": check.expected,
        "observed": observed,
        "passed": passed,
        "message": message.replace("\n", " "),
    }


def _subject(check: PlannedCheck) -> str:
    d = check.detail
    return {
        CheckKind.COLUMNS: f"table {check.target} columns",
        CheckKind.ROW_COUNT: f"table {check.target} row count",
        CheckKind.PRIMARY_KEY_ENFORCED: f"table {d.get('table')} primary key {d.get('key')}",
        CheckKind.PRIMARY_KEY_NOT_NULL: f"table {d.get('table')} primary key column {check.kwargs.get('column')}",
        CheckKind.PRIMARY_KEY_UNIQUE: f"table {d.get('table')} primary key {d.get('key')}",
        CheckKind.FOREIGN_KEY: f"table {d.get('table')} foreign key {d.get('constraint')}",
        CheckKind.VIEW_ROWS: f"view {check.target}",
        CheckKind.SMOKE_QUERY: f"smoke query {check.target!r} ({d.get('sql')})",
    }[check.kind]


def _surveyed(check: PlannedCheck) -> tuple[Any, str]:
    if "unknown_method" in check.detail:
        return None, (
            f"view {check.target} cannot be checked: fingerprint method {check.detail['unknown_method']!r}"
            " is not one this version computes"
        )
    noun = "view" if check.kind is CheckKind.VIEW_ROWS else "table"
    rows = check.expected.get("rows") if isinstance(check.expected, Mapping) else check.expected
    return None, f"{noun} {check.target} is missing (baseline {_rows(rows)})"


def _rows(count: Any) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _exception_message(result: Any) -> str | None:
    """GX keeps a failed query's error either flat or per metric; the first line of the first one."""
    info = result.exception_info or {}
    candidates = [info] + [value for value in info.values() if isinstance(value, Mapping)]
    for candidate in candidates:
        if candidate.get("raised_exception") and candidate.get("exception_message"):
            return str(candidate["exception_message"]).strip().splitlines()[0]
    return None


def _unexpected_rows(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(result.get("details", {}).get("unexpected_rows", []))


def _columns(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    expected = check.expected
    if passed:
        return expected, f"table {check.target} has its {len(expected)} baseline columns"
    rows = _unexpected_rows(result)
    observed = rows[0].get("observed") if rows else None
    if isinstance(observed, str):
        observed = json.loads(observed)
    if observed is None:
        return None, f"table {check.target} is missing (baseline {len(expected)} columns)"
    have, want = [" ".join(c) for c in observed], [" ".join(c) for c in expected]
    missing = [c for c in want if c not in have]
    extra = [c for c in have if c not in want]
    differences = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"not in the baseline {', '.join(extra)}" if extra else "",
            "same columns in another order" if not missing and not extra else "",
        )
        if part
    )
    message = f"table {check.target} columns differ from the baseline ({differences}): has [{', '.join(have)}]"
    return observed, message if missing or extra else f"{message}, baseline [{', '.join(want)}]"


def _row_count(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    observed = result.get("observed_value")
    if passed:
        return observed, f"table {check.target} has {_rows(observed)}, as in the baseline"
    return observed, f"table {check.target} has {_rows(observed)}, baseline {check.expected}"


def _not_null(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    observed = int(result.get("unexpected_count") or 0)
    table, column = check.detail["table"], check.kwargs["column"]
    if passed:
        return observed, f"table {table} primary key column {column} has no NULL"
    return observed, f"table {table} has {_rows(observed)} with a NULL in primary key column {column}"


def _unique(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    observed = int(result.get("unexpected_count") or 0)
    table, key = check.detail["table"], check.detail["key"]
    if passed:
        return observed, f"table {table} primary key {key} is unique"
    examples = ", ".join(dict.fromkeys(str(value) for value in result.get("partial_unexpected_list", [])))
    return observed, f"table {table} has {_rows(observed)} sharing primary key {key} values (e.g. {examples})"


def _enforced(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    d = check.detail
    if passed:
        return "enforced", f"table {d['table']} primary key {d['key']} is enforced by a valid primary-key index"
    return "not enforced", f"table {d['table']} has no valid primary key {d['key']}: the restore lost the constraint"


def _foreign_key(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    d = check.detail
    constraint = (
        f"foreign key {d['constraint']} ({', '.join(d['columns'])}) -> "
        f"{d['references']} ({', '.join(d['referenced_columns'])})"
    )
    if passed:
        return 0, f"table {d['table']} {constraint} holds"
    rows = _unexpected_rows(result)
    observed = int(rows[0].get("orphan_rows", 0)) if rows else None
    return observed, f"table {d['table']} has {_rows(observed)} breaking {constraint}"


def _view_rows(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    expected = check.expected
    if passed:
        return dict(
            expected
        ), f"view {check.target} gives its {_rows(expected['rows'])} of the baseline (fingerprint matches)"
    rows = _unexpected_rows(result)
    if not rows:
        return None, f"view {check.target} could not be fingerprinted"
    observed: dict[str, Any] = {"rows": int(rows[0]["row_count"]), "fingerprint": str(rows[0]["fingerprint"])}
    if observed["rows"] != expected["rows"]:
        return observed, f"view {check.target} has {_rows(observed['rows'])}, baseline {expected['rows']}"
    return observed, (
        f"view {check.target} rows differ from the baseline fingerprint ({_rows(observed['rows'])} as in"
        f" the baseline, fingerprint {observed['fingerprint'][:16]}, baseline {expected['fingerprint'][:16]})"
    )


def _smoke(check: PlannedCheck, result: Mapping[str, Any], passed: bool) -> tuple[Any, str]:
    observed = result.get("observed_value")
    sql = check.detail["sql"]
    if passed:
        return _rows(observed), f"smoke query {check.target!r} ({sql}) ran and returned {_rows(observed)}"
    return _rows(observed), f"smoke query {check.target!r} ({sql}) returned {_rows(observed)}"


_VERDICTS = {
    CheckKind.COLUMNS: _columns,
    CheckKind.ROW_COUNT: _row_count,
    CheckKind.PRIMARY_KEY_ENFORCED: _enforced,
    CheckKind.PRIMARY_KEY_NOT_NULL: _not_null,
    CheckKind.PRIMARY_KEY_UNIQUE: _unique,
    CheckKind.FOREIGN_KEY: _foreign_key,
    CheckKind.VIEW_ROWS: _view_rows,
    CheckKind.SMOKE_QUERY: _smoke,
}


def write_summary(summary: Mapping[str, Any], report_dir: Path) -> Path:
    path = report_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def page_link(page: Path | None, report_dir: Path) -> str | None:
    """Where a check's Great Expectations validation page is, relative to the report folder."""
    if page is None or not page.is_relative_to(report_dir):
        return None
    return page.relative_to(report_dir).as_posix()


def write_report_html(summary: Mapping[str, Any], report_dir: Path) -> Path:
    """The auditor's report, one page with inline style only, from a summary: the checks' own
    (``check_restored_database``) or the restore test's final one, which adds the RTO against its
    target and each step's duration. Each check's target links to the Great Expectations page
    that decided it (its ``data_docs_page``) by a relative path."""
    checks = summary["checks"]
    passed = sum(1 for c in checks if c["passed"])
    verdict = "PASSED" if summary["passed"] else "FAILED"
    rows = "\n".join(
        f'<tr class="{"pass" if c["passed"] else "fail"}"><td>{_h(c["check"])}</td><td>{_target(c)}</td>'
        f"<td>{_cell(c['expected'])}</td><td>{_cell(c['observed'])}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td><td>{_h(c['message'])}</td></tr>"
        for c in checks
    )
    facts = [("backup set", _h(summary["backup_set_id"]))]
    if summary.get("backup_manifest"):
        facts.append(("manifest", _h(summary["backup_manifest"])))
    if summary.get("scratch_database"):
        facts.append(("scratch database", _h(summary["scratch_database"])))
    if summary.get("upgrade_rehearsal"):
        facts.append(("upgrade rehearsal", _h(summary["upgrade_rehearsal"])))
    checks_passed = summary.get("checks_passed", passed == len(checks))
    facts.append(
        ("checks", f'<span class="{"ok" if checks_passed else "bad"}">{passed} of {len(checks)} passed</span>')
    )
    rto_over = False
    if summary.get("rto_s") is not None:
        rto_s, target_s = float(summary["rto_s"]), summary.get("rto_target_s")
        rto_over = target_s is not None and rto_s > float(target_s)
        judged = (
            ""
            if target_s is None
            else (
                f' <span class="bad">OVER THE TARGET of {_duration(target_s)}</span>'
                if rto_over
                else f' <span class="ok">within the target of {_duration(target_s)}</span>'
            )
        )
        facts.append(
            (
                "RTO",
                f"{_duration(rto_s)}{judged}<br><small>from the start of the fetch to the end of the checks,"
                " wall clock</small>",
            )
        )
    elif summary.get("seconds") is not None:
        facts.append(("checks took", _duration(summary["seconds"])))
    docs_index = report_dir / "data_docs" / "index.html"
    if docs_index.is_file():
        facts.append(
            (
                "Data Docs",
                '<a href="data_docs/index.html">data_docs/index.html</a><br><small>reads offline;'
                " stored beside this report as data-docs.tar.gz, unpack it into a folder"
                " data_docs next to this file</small>",
            )
        )
    reasons = [f"{len(checks) - passed} of {len(checks)} checks failed"] if not checks_passed else []
    if rto_over:
        reasons.append("the restore took longer than the RTO target")
    why = f'<p class="bad">Failed because {" and ".join(reasons)}.</p>' if reasons and not summary["passed"] else ""
    # An upgrade rehearsal says so in the title: its verdict is about the newer major.
    rehearsal = f" (upgrade rehearsal: {_h(summary['upgrade_rehearsal'])})" if summary.get("upgrade_rehearsal") else ""
    fact_rows = "\n".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Restore test {_h(summary["backup_set_id"])}: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin-bottom: 1.5em; }}
table.checks {{ width: 100%; }}
th, td {{ border: 1px solid #999; padding: 4px 6px; text-align: left; vertical-align: top; }}
td {{ max-width: 40em; overflow-wrap: anywhere; }}
td.number {{ text-align: right; }}
tr.fail td {{ background: #fdd; }} tr.pass td:nth-child(5) {{ color: #060; }}
.verdict, .ok, .bad {{ font-weight: bold; }} .ok {{ color: #060; }} .bad {{ color: #b00; }}
.verdict {{ color: {"#060" if summary["passed"] else "#b00"}; }}
</style></head><body>
<h1>Restore test of backup set {_h(summary["backup_set_id"])}{rehearsal}: <span class="verdict">{verdict}</span></h1>
{why}
<table class="facts"><tbody>
{fact_rows}
</tbody></table>
{_steps_table(summary)}
<h2>Checks</h2>
<p>Each target links to the Great Expectations validation page that decided it. This report needs nothing
from the network. A view's row count and fingerprint and a foreign key's orphaned rows are counted by hms-dr
on the restored database while Great Expectations loads, and Great Expectations compares them with the
baselines (the validation page names the query; without that note, Great Expectations ran the query itself).
A primary key PostgreSQL enforces with a valid index is proven from the catalog, not by reading its rows.
A table's content and the large objects are compared by hms-dr itself: every row of the restored table, as
pg_dump writes it, against the digest taken from the backup's own dump stream (these rows link to no page).</p>
<table class="checks"><thead><tr><th>check</th><th>target</th><th>baseline</th><th>observed</th><th>result</th><th>message</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    path = report_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _steps_table(summary: Mapping[str, Any]) -> str:
    steps: Mapping[str, Any] = summary.get("steps_s") or {}
    if not steps:
        return ""
    rto_s = summary.get("rto_s")
    rows = [(name.replace("_", " "), float(seconds)) for name, seconds in steps.items()]
    if rto_s is not None:
        # RTO is wall clock from fetch to checks: the time Airflow took between the tasks counts too.
        between = float(rto_s) - sum(seconds for _, seconds in rows)
        if between > 0.0005:
            rows.append(("between steps (scheduling, task start-up)", between))
    share = (lambda s: f"{100 * s / float(rto_s):.1f} %") if rto_s else (lambda s: "")
    body = "\n".join(
        f'<tr><td>{_h(name)}</td><td class="number">{seconds:.3f}</td><td class="number">{share(seconds)}</td></tr>'
        for name, seconds in rows
    )
    return f"""<h2>Steps</h2>
<table class="steps"><thead><tr><th>step</th><th>seconds</th><th>share of RTO</th></tr></thead>
<tbody>
{body}
</tbody></table>"""


def _duration(seconds: Any) -> str:
    value = float(seconds)
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min ({value:.0f} s)"
    return f"{value / 3600:.2f} h ({value:.0f} s)"


def _target(check: Mapping[str, Any]) -> str:
    page = check.get("data_docs_page")
    if not page:
        return _h(check["target"])
    return f'<a href="{_h(quote(page))}">{_h(check["target"])}</a>'


def _h(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], list):
        return "<br>".join(_h(" ".join(str(part) for part in item)) for item in value)
    if isinstance(value, Mapping):
        return "<br>".join(f"{_h(k)}: {_h(v)}" for k, v in value.items())
    return _h("" if value is None else value)
