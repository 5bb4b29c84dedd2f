"""The backup status: one page's worth of facts about what is protected right now.

``collect_status`` reads the catalogs (one listing per kind; WAL from its listing and the newest
few manifests) and the audit trail, and returns plain data: the newest complete set of each kind with its marks, the
recovery point age, the RTO trend of the restore tests and the last DR runs. ``render_status_html``
turns that into a self-contained page (inline CSS, an inline SVG chart, no script, every value
escaped) that the Airflow plugin serves.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hms_dr.audit import read_audit_records
from hms_dr.catalog import BackupSet, cluster_prefix, key_for, list_catalog
from hms_dr.errors import HmsDrError
from hms_dr.freshness import _age_text
from hms_dr.manifest import MANIFEST_NAME, BackupKind
from hms_dr.wal.listing import read_wal_sets
from hms_dr.wal.newest import newest_stored_wal

if TYPE_CHECKING:
    from hms_dr.store import Store

CATALOG_KINDS = (BackupKind.LOGICAL, BackupKind.SCHEMA, BackupKind.DATA, BackupKind.BASE, BackupKind.RESTORE_TEST)
# The DR DAGs whose trigger form the page links to; the Airflow 3 UI has no URL of its own for
# the form: the DAG page (/dags/<dag_id>) carries the Trigger button that opens it.
DR_DAGS = ("hms_dr_restore", "hms_dr_pitr")
LAST_DR_RUNS = 10
RTO_TREND_POINTS = 30


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _tested_sets(restore_tests: Sequence[BackupSet]) -> set[tuple[str, str]]:
    """(kind, id) of the sets a passed restore test restored: the logical set, or the base backup.

    By kind as well as id: the schema and data sets of a nightly run share the logical set's id,
    but restoring the logical dump proves nothing about them.
    """
    tested: set[tuple[str, str]] = set()
    for report in restore_tests:
        body = report.manifest.body
        if body.get("passed") is not True:
            continue
        tested_set = body.get("tested_set")
        if isinstance(tested_set, Mapping) and tested_set.get("backup_set_id"):
            tested.add((str(tested_set.get("kind") or BackupKind.LOGICAL.value), str(tested_set["backup_set_id"])))
        if body.get("base_backup_set_id"):
            tested.add((BackupKind.BASE.value, str(body["base_backup_set_id"])))
    return tested


def _rto_trend(restore_tests: Sequence[BackupSet]) -> list[dict[str, Any]]:
    points = []
    for report in restore_tests[-RTO_TREND_POINTS:]:
        rto_s = report.manifest.body.get("rto_s")
        if not isinstance(rto_s, (int, float)):
            continue
        points.append(
            {
                "finished_at": _iso(report.finished_at),
                "rto_s": float(rto_s),
                "rto_target_s": report.manifest.body.get("rto_target_s"),
                "passed": report.manifest.body.get("passed") is True,
                "mode": str(report.manifest.body.get("mode") or ""),
                "backup_set_id": report.backup_set_id,
                # An upgrade rehearsal restored into a newer major's server: its RTO is that server's.
                **(
                    {"upgrade_rehearsal": str(report.manifest.body["upgrade_rehearsal"])}
                    if report.manifest.body.get("upgrade_rehearsal")
                    else {}
                ),
            }
        )
    return points


def _last_dr_runs(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per DR run: its latest record (records are written oldest first per run)."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for record in records:
        key = (str(record.get("dag_id")), str(record.get("run_id")))
        seen = latest.get(key)
        if seen is None or str(record.get("recorded_at", "")) >= str(seen.get("recorded_at", "")):
            latest[key] = record
    runs = [
        {
            "dag_id": str(r.get("dag_id", "")),
            "run_id": str(r.get("run_id", "")),
            "triggered_by": str(r.get("triggered_by", "")),
            "started_at": str(r.get("started_at", "")),
            "recorded_at": str(r.get("recorded_at", "")),
            "event": str(r.get("event", "")),
            "reason": str(r.get("reason", "")),
            "outcome": str(r.get("outcome", "")),
        }
        for r in latest.values()
    ]
    runs.sort(key=lambda run: run["recorded_at"], reverse=True)
    return runs[:LAST_DR_RUNS]


class _OffsiteCheck:
    """Whether the offsite store holds a key; ``None`` (unknown) once it failed, with the reason kept."""

    def __init__(self, offsite: Store | None) -> None:
        self.offsite = offsite
        self.error: str | None = None

    def holds(self, key: str) -> bool | None:
        if self.offsite is None or self.error is not None:
            return None
        try:
            return self.offsite.exists(key)
        except HmsDrError as exc:  # an unreachable offsite store must not hide the rest of the page
            self.error = str(exc).splitlines()[0]
            return None


def collect_status(store: Store, offsite: Store | None, cluster: str, now: datetime) -> dict[str, Any]:
    """The status of ``cluster``'s backups in ``store`` (and ``offsite``) at ``now``, as plain data.

    "verified" means the set has a manifest: it is written only after every payload was read back
    against its checksum. "offsite" means the offsite store holds the same manifest key.
    """
    listings = {kind: list_catalog(store, cluster, kind).sets for kind in CATALOG_KINDS}
    offsite_check = _OffsiteCheck(offsite)
    tested = _tested_sets(listings[BackupKind.RESTORE_TEST])
    kinds: list[dict[str, Any]] = []
    for kind in CATALOG_KINDS:
        sets = listings[kind]
        row: dict[str, Any] = {"kind": kind.value, "count": len(sets), "backup_set_id": None}
        if sets:
            newest = sets[-1]
            row.update(
                {
                    "backup_set_id": newest.backup_set_id,
                    "finished_at": _iso(newest.finished_at),
                    "age_s": (now - newest.finished_at).total_seconds(),
                    "size_bytes": newest.size_bytes,
                    "verified": True,
                    "offsite": offsite_check.holds(newest.manifest_key),
                    "restore_tested": None
                    if kind is BackupKind.RESTORE_TEST
                    else (kind.value, newest.backup_set_id) in tested,
                }
            )
            if kind is BackupKind.RESTORE_TEST:
                row["passed"] = newest.manifest.body.get("passed") is True
        kinds.append(row)

    wal_sets = read_wal_sets(store, cluster)
    wal_row: dict[str, Any] = {
        "kind": BackupKind.WAL.value,
        "count": sum(s.complete for s in wal_sets),
        "backup_set_id": None,
    }
    rpo_s: float | None = None
    # The same newest WAL and archived_at as the WAL DAG's RPO (wal/newest.py), not the listing's mtime.
    newest_wal = newest_stored_wal(store, cluster, wal_sets)
    if newest_wal is not None:
        rpo_s = (now - newest_wal.archived_at).total_seconds()
        wal_row.update(
            {
                "backup_set_id": newest_wal.name,
                "finished_at": _iso(newest_wal.archived_at),
                "age_s": rpo_s,
                "size_bytes": None,
                "verified": True,
                "offsite": offsite_check.holds(key_for(cluster, BackupKind.WAL, newest_wal.name, MANIFEST_NAME)),
                "restore_tested": None,
            }
        )
    kinds.insert(4, wal_row)
    rpo_source = "newest archived WAL set"
    if rpo_s is None:
        # Without WAL the recovery point is the newest full copy of the data.
        full = [s for kind in (BackupKind.LOGICAL, BackupKind.BASE) for s in listings[kind]]
        if full:
            rpo_s = (now - max(s.finished_at for s in full)).total_seconds()
            rpo_source = "newest logical or base backup set (no WAL archived)"
        else:
            rpo_source = "no backup set at all"
    return {
        "cluster": cluster,
        "checked_at": _iso(now),
        "primary": store.describe(cluster_prefix(cluster)),
        "offsite_store": None if offsite is None else offsite.describe(cluster_prefix(cluster)),
        "offsite_error": offsite_check.error,
        "kinds": kinds,
        "rpo_s": rpo_s,
        "rpo_source": rpo_source,
        "rto_trend": _rto_trend(listings[BackupKind.RESTORE_TEST]),
        "dr_runs": _last_dr_runs(read_audit_records(store, cluster)),
        "dr_dags": list(DR_DAGS),
    }


def _size_text(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "–"
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size_bytes} B"


def _mark(value: bool | None) -> str:
    if value is None:
        return '<td class="na">–</td>'
    return '<td class="ok">yes</td>' if value else '<td class="bad">no</td>'


def render_rto_chart(points: Sequence[Mapping[str, Any]], width: int = 640, height: int = 220) -> str:
    """An inline SVG line chart of RTO seconds per restore test, oldest left; a dashed target line."""
    e = html.escape
    if not points:
        return '<p class="empty" id="rto-chart-empty">No restore test has recorded an RTO yet.</p>'
    left, right, top, bottom = 56, 16, 16, 40
    targets = [float(p["rto_target_s"]) for p in points if isinstance(p.get("rto_target_s"), (int, float))]
    # The trend sets the scale; a target far above it (4 h against minutes) would flatten every
    # point onto the axis, so it is drawn only when it fits and otherwise named in the corner.
    top_value = max(float(p["rto_s"]) for p in points) * 1.25 or 1.0
    if targets and targets[-1] <= top_value * 2:
        top_value = max(top_value, targets[-1] * 1.1)
    span_x = width - left - right
    span_y = height - top - bottom

    def x_of(index: int) -> float:
        return left + (span_x / 2 if len(points) == 1 else span_x * index / (len(points) - 1))

    def y_of(value: float) -> float:
        return top + span_y * (1 - value / top_value)

    parts = [
        f'<svg id="rto-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="RTO of restore tests, in seconds">',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>',
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top_value * fraction
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{y_of(value) + 4:.1f}" text-anchor="end">{value:.0f} s</text>'
        )
    if targets and targets[-1] <= top_value:
        y = y_of(targets[-1])
        parts.append(f'<line class="target" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{width - right}" y="{y - 4:.1f}" text-anchor="end">target {targets[-1]:.0f} s</text>'
        )
    elif targets:
        parts.append(
            f'<text class="tick" x="{width - right}" y="{top + 10}" text-anchor="end">target {targets[-1]:.0f} s (above the scale)</text>'
        )
    path = " ".join(f"{x_of(i):.1f},{y_of(float(p['rto_s'])):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline class="trend" points="{path}"/>')
    for i, p in enumerate(points):
        css = "point pass" if p.get("passed") else "point fail"
        rehearsal = f" (upgrade rehearsal: {p['upgrade_rehearsal']})" if p.get("upgrade_rehearsal") else ""
        title = f"{p.get('finished_at')}: {float(p['rto_s']):.1f} s, {p.get('mode')}{rehearsal}, {'passed' if p.get('passed') else 'failed'}"
        parts.append(
            f'<circle class="{css}" cx="{x_of(i):.1f}" cy="{y_of(float(p["rto_s"])):.1f}" r="4"><title>{e(title)}</title></circle>'
        )
    first, last = str(points[0].get("finished_at") or "")[:10], str(points[-1].get("finished_at") or "")[:10]
    parts.append(f'<text class="tick" x="{left}" y="{height - bottom + 18}">{e(first)}</text>')
    parts.append(
        f'<text class="tick" x="{width - right}" y="{height - bottom + 18}" text-anchor="end">{e(last)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2733;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#5b6673;font-size:.9rem} table{border-collapse:collapse;font-size:.9rem}
th,td{border:1px solid #d5dbe1;padding:.3rem .6rem;text-align:left} th{background:#f2f5f8}
.ok{color:#17703a;font-weight:600} .bad{color:#b42318;font-weight:600} .na{color:#98a2b3}
.rpo{font-size:1.6rem;font-weight:700} .links a{margin-right:1rem}
svg .axis{stroke:#5b6673} svg .trend{fill:none;stroke:#2563eb;stroke-width:2}
svg .target{stroke:#b42318;stroke-dasharray:6 4} svg .tick{font-size:11px;fill:#5b6673}
svg .pass{fill:#17703a} svg .fail{fill:#b42318}
"""


def render_status_html(status: Mapping[str, Any], *, base_url: str = "") -> str:
    """The status page; ``base_url`` prefixes the links into the Airflow UI (empty: same host)."""
    e = html.escape
    rows = []
    for row in status["kinds"]:
        if row.get("backup_set_id") is None:
            rows.append(f'<tr><td>{e(row["kind"])}</td><td colspan="7" class="bad">no complete set</td></tr>')
            continue
        rows.append(
            f'<tr><td>{e(row["kind"])}</td><td class="set-id">{e(str(row["backup_set_id"]))}</td>'
            f"<td>{e(str(row.get('finished_at')))}</td><td>{e(_age_text_s(row.get('age_s')))}</td>"
            f"<td>{e(_size_text(row.get('size_bytes')))}</td>"
            f"{_mark(row.get('verified'))}{_mark(row.get('offsite'))}{_mark(row.get('restore_tested'))}</tr>"
        )
    runs = [
        f"<tr><td>{e(r['dag_id'])}</td><td>{e(r['run_id'])}</td><td>{e(r['triggered_by'])}</td>"
        f"<td>{e(r['started_at'])}</td><td>{e(r['event'])}</td><td>{e(r['reason'])}</td><td>{e(r['outcome'])}</td></tr>"
        for r in status["dr_runs"]
    ]
    runs_table = (
        '<table id="dr-runs"><tr><th>DAG</th><th>run</th><th>by</th><th>started</th><th>last event</th>'
        "<th>reason</th><th>outcome</th></tr>" + "".join(runs) + "</table>"
        if runs
        else '<p class="empty">No DR run recorded in the audit trail.</p>'
    )
    links = "".join(
        f'<a href="{e(base_url)}/dags/{e(dag_id)}">Trigger {e(dag_id)}</a>' for dag_id in status.get("dr_dags", [])
    )
    rpo = status.get("rpo_s")
    offsite = status.get("offsite_store")
    offsite_error = status.get("offsite_error")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>HMS backup status: {e(status['cluster'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>HMS backup status: {e(status['cluster'])}</h1>",
        f'<p class="meta">checked {e(str(status["checked_at"]))}; primary store {e(str(status["primary"]))}; '
        f"offsite store {e(str(offsite)) if offsite else 'not configured'}</p>",
        f'<p class="bad" id="offsite-error">offsite store unreadable: {e(str(offsite_error))}</p>'
        if offsite_error
        else "",
        f'<h2>Recovery point now</h2><p><span class="rpo" id="rpo">{e(_age_text_s(rpo))}</span> '
        f'<span class="meta">since the {e(str(status["rpo_source"]))}</span></p>',
        '<h2>Newest complete set per kind</h2><table id="sets"><tr><th>kind</th><th>backup set</th><th>finished</th>'
        "<th>age</th><th>size</th><th>verified</th><th>offsite</th><th>restore-tested</th></tr>",
        *rows,
        "</table><h2>RTO of restore tests</h2>",
        render_rto_chart(status["rto_trend"]),
        "<h2>Last DR runs</h2>",
        runs_table,
        f'<h2>Disaster recovery</h2><p class="links">{links}</p>',
        '<p class="meta">Each link opens the DAG in Airflow; its Trigger button opens the form.</p>',
        "</body></html>",
    ]
    return "".join(parts)


def _age_text_s(age_s: float | None) -> str:
    if age_s is None:
        return "unknown"
    return _age_text(timedelta(seconds=age_s))
