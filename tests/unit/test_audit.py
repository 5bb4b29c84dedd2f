"""Audit records of DR runs: secrets masked, never overwritten, read back as a timeline."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hms_dr.audit import Approval, AuditRecord, mask_secrets, read_audit_records, record_key, write_audit_record
from hms_dr.store import open_store

STARTED = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)


def a_record(event: str, at: datetime, **params: object) -> AuditRecord:
    return AuditRecord(
        dag_id="hms_dr_restore",
        run_id="manual__2026-11-24T14:05:00+00:00",
        triggered_by="dba.alice",
        started_at=STARTED,
        reason="rows deleted from appointments at 14:00",
        params=params,
        event=event,
        recorded_at=at,
    )


def test_keys_naming_secrets_are_masked_at_any_depth() -> None:
    masked = mask_secrets(
        {"tables": ["appointments"], "target": {"password": "p", "api_token": "t", "port": 5433}, "Secret": 1}
    )
    assert masked == {
        "tables": ["appointments"],
        "target": {"password": "***", "api_token": "***", "port": 5433},
        "Secret": "***",
    }


def test_records_are_stored_per_event_never_overwritten_and_read_in_order(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    store = open_store(root.as_uri())
    password = secrets.token_hex(16)
    first = write_audit_record(
        store, "hms-primary", a_record("started", STARTED, tables=["appointments"], password=password)
    )
    approved = AuditRecord(
        **{
            **a_record("approved", STARTED + timedelta(minutes=3)).__dict__,
            "approvals": (Approval("dba.bob", STARTED + timedelta(minutes=3), "approved", "checked counts"),),
        }
    )
    second = write_audit_record(store, "hms-primary", approved)
    assert first != second and first.startswith("hms-primary/audit/2026-11-24/")
    records = read_audit_records(store, "hms-primary")
    assert [r["event"] for r in records] == ["started", "approved"]
    assert records[0]["params"] == {"tables": ["appointments"], "password": "***"}
    assert records[1]["approvals"][0]["by"] == "dba.bob" and records[1]["triggered_by"] == "dba.alice"
    assert password not in (root / first).read_text()


def test_the_key_is_safe_for_any_run_id() -> None:
    key = record_key("hms-primary", a_record("failed", STARTED))
    assert key.endswith("-hms_dr_restore-manual__2026-11-24T14_05_00_00_00-failed.json")
    assert "+" not in key and ":" not in key
