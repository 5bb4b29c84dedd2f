"""The status page shows the newest complete set per kind with its marks, the RPO now, the RTO trend and the DR runs."""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.audit import AuditRecord, write_audit_record
from hms_dr.catalog import key_for
from hms_dr.manifest import BackupKind, Payload
from hms_dr.publish import publish_set
from hms_dr.status import collect_status, render_rto_chart, render_status_html
from hms_dr.store import open_store

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CLUSTER = "hms-primary"


def _publish(store: Any, kind: BackupKind, set_id: str, finished_at: datetime, size: int = 1, **extra: object) -> None:
    stored = store.put(key_for(CLUSTER, kind, set_id, "payload"), io.BytesIO(b"x" * size))
    publish_set(
        store,
        kind=kind,
        cluster=CLUSTER,
        backup_set_id=set_id,
        started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at,
        payloads=[Payload("payload", stored.size_bytes, stored.sha256, "test")],
        extra=extra,
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _restore_test(store: Any, set_id: str, finished_at: datetime, tested: str, rto_s: float, passed: bool) -> None:
    _publish(
        store,
        BackupKind.RESTORE_TEST,
        set_id,
        finished_at,
        mode="logical",
        passed=passed,
        rto_s=rto_s,
        rto_target_s=3600,
        tested_set={"kind": "logical", "backup_set_id": tested},
    )


@pytest.fixture()
def stores(tmp_path: Path) -> tuple[Any, Any]:
    (tmp_path / "primary").mkdir()
    (tmp_path / "offsite").mkdir()
    return open_store(f"file://{tmp_path / 'primary'}"), open_store(f"file://{tmp_path / 'offsite'}")


def _row(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(row for row in status["kinds"] if row["kind"] == kind)


def test_the_newest_set_of_each_kind_carries_its_age_size_and_marks(stores: tuple[Any, Any]) -> None:
    primary, offsite = stores
    _publish(primary, BackupKind.LOGICAL, "20261122T020001Z", NOW - timedelta(days=2), size=10)
    _publish(primary, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10), size=2048)
    _publish(offsite, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10), size=2048)
    _publish(primary, BackupKind.BASE, "20261122T030001Z", NOW - timedelta(days=2))
    _publish(primary, BackupKind.SCHEMA, "20261124T020001Z", NOW - timedelta(hours=10))
    _restore_test(primary, "20261124T040001Z", NOW - timedelta(hours=8), "20261124T020001Z", 120.0, True)

    status = collect_status(primary, offsite, CLUSTER, NOW)

    logical = _row(status, "logical")
    assert logical["backup_set_id"] == "20261124T020001Z"
    assert logical["age_s"] == 10 * 3600
    assert logical["size_bytes"] == 2048
    assert (logical["verified"], logical["offsite"], logical["restore_tested"]) == (True, True, True)
    base = _row(status, "base")
    assert (base["offsite"], base["restore_tested"]) == (False, False)
    assert _row(status, "schema")["restore_tested"] is False  # same id as the logical set, but not what was restored
    assert _row(status, "data")["backup_set_id"] is None
    assert _row(status, "restore-test")["passed"] is True


def test_a_failed_restore_test_does_not_mark_its_set_restore_tested(stores: tuple[Any, Any]) -> None:
    primary, _ = stores
    _publish(primary, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10))
    _restore_test(primary, "20261124T040001Z", NOW - timedelta(hours=8), "20261124T020001Z", 5000.0, False)
    status = collect_status(primary, None, CLUSTER, NOW)
    assert _row(status, "logical")["restore_tested"] is False
    assert _row(status, "logical")["offsite"] is None  # no offsite store: unknown, not "no"
    assert status["rto_trend"][0]["passed"] is False


def test_rpo_now_is_the_age_of_the_newest_archived_wal_set(stores: tuple[Any, Any], tmp_path: Path) -> None:
    primary, _ = stores
    _publish(primary, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10))
    for name, age in (("000000010000000000000001", 600), ("000000010000000000000002", 90)):
        _publish(
            primary, BackupKind.WAL, name, NOW - timedelta(seconds=age), archived_at=_iso(NOW - timedelta(seconds=age))
        )
        moment = (NOW - timedelta(seconds=age)).timestamp()
        for path in (tmp_path / "primary" / CLUSTER / "wal" / name).iterdir():
            os.utime(path, (moment, moment))
    primary.put_bytes(key_for(CLUSTER, BackupKind.WAL, "000000010000000000000003", "segment"), b"w")  # no manifest yet
    status = collect_status(primary, None, CLUSTER, NOW)
    assert status["rpo_s"] == pytest.approx(90, abs=1)
    assert status["rpo_source"] == "newest archived WAL set"
    assert _row(status, "wal")["backup_set_id"] == "000000010000000000000002"


def test_without_wal_rpo_falls_back_to_the_newest_full_set_and_without_sets_it_is_unknown(
    stores: tuple[Any, Any],
) -> None:
    primary, _ = stores
    assert collect_status(primary, None, CLUSTER, NOW)["rpo_s"] is None
    _publish(primary, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10))
    status = collect_status(primary, None, CLUSTER, NOW)
    assert status["rpo_s"] == 10 * 3600
    assert "no WAL" in status["rpo_source"]


def test_the_rto_trend_lists_restore_tests_oldest_first(stores: tuple[Any, Any]) -> None:
    primary, _ = stores
    _restore_test(primary, "20261120T040001Z", NOW - timedelta(days=4), "a", 300.0, True)
    _restore_test(primary, "20261124T040001Z", NOW - timedelta(hours=8), "b", 240.5, True)
    trend = collect_status(primary, None, CLUSTER, NOW)["rto_trend"]
    assert [(p["rto_s"], p["mode"]) for p in trend] == [(300.0, "logical"), (240.5, "logical")]


def test_the_last_dr_runs_show_each_runs_latest_record_newest_first(stores: tuple[Any, Any]) -> None:
    primary, _ = stores
    for run_id, event, minute in (("r1", "started", 1), ("r1", "succeeded", 5), ("r2", "started", 9)):
        write_audit_record(
            primary,
            CLUSTER,
            AuditRecord(
                dag_id="hms_dr_restore",
                run_id=run_id,
                triggered_by="admin",
                started_at=NOW,
                reason="drill",
                params={},
                event=event,
                recorded_at=NOW + timedelta(minutes=minute),
            ),
        )
    runs = collect_status(primary, None, CLUSTER, NOW)["dr_runs"]
    assert [(r["run_id"], r["event"]) for r in runs] == [("r2", "started"), ("r1", "succeeded")]


def test_the_page_escapes_values_and_links_the_dr_dags(stores: tuple[Any, Any]) -> None:
    primary, _ = stores
    _publish(primary, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10))
    write_audit_record(
        primary,
        CLUSTER,
        AuditRecord(
            dag_id="hms_dr_restore",
            run_id="r1",
            triggered_by="<script>alert(1)</script>",
            started_at=NOW,
            reason="a & b",
            params={},
            event="started",
            recorded_at=NOW,
        ),
    )
    page = render_status_html(collect_status(primary, None, CLUSTER, NOW))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a &amp; b" in page
    assert 'href="/dags/hms_dr_restore"' in page and 'href="/dags/hms_dr_pitr"' in page
    assert "20261124T020001Z" in page and "10 h 0 min" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained: nothing fetched


def test_the_rto_chart_has_one_point_per_restore_test_and_a_target_line() -> None:
    points = [
        {
            "finished_at": "2026-11-20T04:00:01Z",
            "rto_s": 300.0,
            "rto_target_s": 3600,
            "passed": True,
            "mode": "logical",
        },
        {
            "finished_at": "2026-11-24T04:00:01Z",
            "rto_s": 4000.0,
            "rto_target_s": 3600,
            "passed": False,
            "mode": "physical",
        },
    ]
    chart = render_rto_chart(points)
    assert chart.startswith('<svg id="rto-chart"')
    assert len(re.findall(r"<circle ", chart)) == 2
    assert 'class="point fail"' in chart and 'class="target"' in chart
    assert "no restore test" in render_rto_chart([]).lower()


def test_a_target_far_above_the_trend_is_named_instead_of_flattening_the_points() -> None:
    points = [
        {"finished_at": "2026-11-24T04:00:01Z", "rto_s": 60.0, "rto_target_s": 14400, "passed": True, "mode": "logical"}
    ]
    chart = render_rto_chart(points)
    assert 'class="target"' not in chart and "target 14400 s (above the scale)" in chart
    cy = float(re.findall(r'cy="([0-9.]+)"', chart)[0])
    assert cy < 100  # near the top of a 220 px chart, not on the axis


class _UnreachableStore:
    def exists(self, key: str) -> bool:
        from hms_dr.errors import StoreUnavailable

        raise StoreUnavailable(f"s3://hms-offsite/{key}: connection refused")

    def describe(self, key: str) -> str:
        return f"s3://hms-offsite/{key}"


def test_an_unreachable_offsite_store_leaves_the_offsite_marks_unknown_and_says_why(stores: tuple[Any, Any]) -> None:
    primary, _ = stores
    _publish(primary, BackupKind.LOGICAL, "20261124T020001Z", NOW - timedelta(hours=10))
    status = collect_status(primary, _UnreachableStore(), CLUSTER, NOW)  # type: ignore[arg-type]
    assert _row(status, "logical")["offsite"] is None
    assert "connection refused" in status["offsite_error"]
    assert 'id="offsite-error"' in render_status_html(status)
