"""Offline Data Docs: GX 1.24 pages take Bootstrap, jQuery, Font Awesome and vega from CDNs, and
its index draws its table with jQuery from a JavaScript literal, so read from disk the index is
blank. ``make_offline`` strips every network reference from the site, gives each page a small
inline stylesheet, and replaces the index with a static one.

The validation and suite pages are rendered server-side: every table, expectation and observed
value is in the HTML. Only the status icons (a Font Awesome font), the "Failed Only" filter,
table sorting and the collapsible panels need the CDN assets; the stylesheet below draws the
icons as text and leaves the panels open.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

MARKER = "hms-dr-offline"

_NETWORK = r"""\s*=\s*["']?\s*(?:https?:)?//"""  # also protocol-relative //host/...
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc" + _NETWORK + r"[^>]*>.*?</script\s*>", re.I | re.S)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref" + _NETWORK + r"[^>]*>", re.I)
_EXTERNAL_IMG = re.compile(r"<img\b[^>]*\bsrc" + _NETWORK + r"[^>]*>", re.I)
_EXTERNAL_ANCHOR = re.compile(r"<a\b[^>]*\bhref" + _NETWORK + r"[^>]*>(.*?)</a\s*>", re.I | re.S)
_FOOTER = re.compile(r"<footer\b.*?</footer\s*>", re.I | re.S)  # GX's is a newsletter link, fixed over the page
_CSS_URL = re.compile(r"""url\(\s*["']?(?:https?:)?//[^)]*\)""", re.I)
# Whatever the rules above did not know (srcset, a form action, ...): the address is dropped.
_ANY_ATTRIBUTE = re.compile(r"""\b([\w:-]+)\s*=\s*(["'])\s*(?:https?:)?//[^"']*\2""", re.I)
_ALT = re.compile(r"""\balt\s*=\s*(["'])(.*?)\1""", re.I | re.S)

STYLESHEET = f"""<style id="{MARKER}">
/* hms-dr: these pages are read from disk; GX's CDN stylesheets and scripts were removed. */
body {{ font-family: sans-serif; margin: 1em 2em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border: 1px solid #999; padding: 3px 6px; text-align: left; vertical-align: top; }}
td table td, td table th {{ border-color: #ccc; }}
code {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
nav ol, nav ul {{ list-style: none; padding-left: 0; }}
.breadcrumb li {{ display: inline; margin-right: 0.5em; }}
.alert {{ background: #eee; padding: 4px 8px; margin-top: 1em; }}
.badge {{ font-weight: bold; }}
.text-danger {{ color: #b00; }} .text-success {{ color: #060; }} .text-warning {{ color: #a60; }}
.collapse {{ display: block; }}
.sticky {{ position: static; }}
.sticky > .card.mb-3 {{ display: none; }} /* the "Failed Only" filter needs jQuery */
i.fas {{ font-style: normal; font-weight: bold; }}
i.fa-check-circle::before {{ content: "\\2714"; }}
i.fa-times::before {{ content: "\\2718"; }}
i.fa-exclamation-triangle::before {{ content: "\\26A0"; }}
td i.fa-check-circle::before {{ content: "\\2714  pass"; }}
td i.fa-times::before {{ content: "\\2718  FAIL"; }}
td i.fa-exclamation-triangle::before {{ content: "\\26A0  ERROR"; }}
@media (min-width: 900px) {{
  .container-fluid > .row {{ display: flex; gap: 1.5em; }}
  .col-md-2 {{ flex: 0 0 16em; }} .col-md-10 {{ flex: 1; min-width: 0; }}
}}
</style>
"""


@dataclass(frozen=True)
class ValidationPage:
    """One validation result page of the site, as the GX run described it."""

    path: Path
    suite: str
    asset: str
    success: bool
    run_name: str = ""
    run_time: str = ""


def make_offline(docs_dir: Path, validations: Sequence[ValidationPage] = ()) -> Path:
    """Rewrite every page under docs_dir to need no network, then write a static ``index.html``
    listing every validation page (``validations`` names their suite, asset and outcome; a page
    on disk it does not describe is listed by its path) and every expectation suite page."""
    for page in sorted(docs_dir.rglob("*.html")):
        page.write_text(offline_html(page.read_text(encoding="utf-8")), encoding="utf-8")
    for sheet in sorted(docs_dir.rglob("*.css")):  # no page links them, but a reader may
        sheet.write_text(_CSS_URL.sub("none", sheet.read_text(encoding="utf-8")), encoding="utf-8")
    index = write_index(docs_dir, validations)
    log.info("Data Docs made readable offline: %s", index)
    return index


def offline_html(page: str) -> str:
    """One page without any reference to the network, with the offline stylesheet."""
    page = _FOOTER.sub("", page)
    page = _EXTERNAL_SCRIPT.sub("", page)
    page = _EXTERNAL_LINK.sub("", page)
    page = _EXTERNAL_IMG.sub(_alt_text, page)
    page = _EXTERNAL_ANCHOR.sub(r"\1", page)
    page = _CSS_URL.sub("none", page)
    page = _ANY_ATTRIBUTE.sub(r"\1=\2\2", page)
    if f'<style id="{MARKER}">' not in page:
        head_end = re.search(r"</head\s*>", page, re.I)
        page = page[: head_end.start()] + STYLESHEET + page[head_end.start() :] if head_end else STYLESHEET + page
    return page


def _alt_text(match: re.Match[str]) -> str:
    alt = _ALT.search(match.group(0))
    return f'<span class="hms-dr-logo">{alt.group(2)}</span>' if alt else ""


def write_index(docs_dir: Path, validations: Sequence[ValidationPage]) -> Path:
    """A plain HTML index, no script: every validation page with its suite, asset and outcome,
    failures first, then every expectation suite page; links are relative paths."""
    known = {page.path.resolve(): page for page in validations}
    rows: list[ValidationPage] = []
    for path in sorted((docs_dir / "validations").rglob("*.html")):
        rows.append(known.get(path.resolve()) or ValidationPage(path, _suite_from_path(docs_dir, path), "", False))
    described = {page.path.resolve() for page in rows}
    rows += [page for page in validations if page.path.resolve() not in described and page.path.is_file()]
    rows.sort(key=lambda page: (page.success, page.suite))
    failed = sum(1 for page in rows if not page.success)
    validation_rows = "\n".join(
        f'<tr class="{"pass" if page.success else "fail"}"><td>{"pass" if page.success else "FAIL"}</td>'
        f"<td>{_h(page.suite)}</td><td>{_h(page.asset)}</td><td>{_h(page.run_name)}</td><td>{_h(page.run_time)}</td>"
        f'<td><a href="{_link(docs_dir, page.path)}">{_h(page.path.name)}</a></td></tr>'
        for page in rows
    )
    suites = sorted((docs_dir / "expectations").rglob("*.html"))
    suite_rows = "\n".join(
        f'<li><a href="{_link(docs_dir, path)}">{_h(_suite_from_path(docs_dir, path))}</a></li>' for path in suites
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Data Docs: restore test</title>
<style id="{MARKER}">
body {{ font-family: sans-serif; margin: 2em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #999; padding: 4px 6px; text-align: left; vertical-align: top; }}
tr.fail td {{ background: #fdd; }} tr.pass td:first-child {{ color: #060; }}
</style></head><body>
<h1>Great Expectations Data Docs of the restore test</h1>
<p>{len(rows)} validation results, {failed} failed. This index is plain HTML written by hms-dr (the one
Great Expectations builds draws its table with scripts from the internet); every page it links to
reads offline.</p>
<h2>Validation results</h2>
<table><thead><tr><th>result</th><th>expectation suite</th><th>data asset</th><th>run name</th><th>run time</th>
<th>validation page</th></tr></thead>
<tbody>
{validation_rows}
</tbody></table>
<h2>Expectation suites</h2>
<ul>
{suite_rows}
</ul>
</body></html>
"""
    index = docs_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _suite_from_path(docs_dir: Path, path: Path) -> str:
    """GX files a suite named a.b under a/b: validations/<suite parts>/<run name>/<run time>/<batch>.html
    and expectations/<suite parts>.html."""
    parts = path.relative_to(docs_dir).with_suffix("").parts
    if parts[0] == "validations":
        return ".".join(parts[1:-3]) or path.stem
    return ".".join(parts[1:])


def _link(docs_dir: Path, path: Path) -> str:
    return _h(quote(path.relative_to(docs_dir).as_posix()))


def _h(value: object) -> str:
    return html.escape(str(value))
