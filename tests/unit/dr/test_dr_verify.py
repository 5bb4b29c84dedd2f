"""The baselines a restored table is checked against, renamed to where the table now is."""

from __future__ import annotations

from hms_dr.dr.request import TableName
from hms_dr.dr.verify import baselines_for_restored

BASELINES = {
    "fingerprint_method": "md5-row-text-sum64x2-v1",
    "session_settings": {"TimeZone": "UTC"},
    "tables": {
        "public.appointments": {
            "rows": 8538,
            "columns": [["id", "bigint", True]],
            "primary_key": ["id"],
            "foreign_keys": [
                {
                    "name": "appointments_patient_id_fkey",
                    "columns": ["patient_id"],
                    "references": "public.patients",
                    "referenced_columns": ["id"],
                },
            ],
        },
        "public.billing": {
            "rows": 8538,
            "columns": [["id", "bigint", True]],
            "primary_key": ["id"],
            "foreign_keys": [
                {
                    "name": "billing_appointment_id_fkey",
                    "columns": ["appointment_id"],
                    "references": "public.appointments",
                    "referenced_columns": ["id"],
                },
            ],
        },
        "public.patients": {
            "rows": 7733,
            "columns": [["id", "bigint", True]],
            "primary_key": ["id"],
            "foreign_keys": [],
        },
    },
    "views": {"public.v_patient_summary": {"rows": 7733, "fingerprint": "ab"}},
}
APPOINTMENTS, BILLING = TableName("public", "appointments"), TableName("public", "billing")


def test_staged_tables_are_checked_where_they_are_and_their_keys_against_the_right_parent() -> None:
    renamed = baselines_for_restored(BASELINES, [APPOINTMENTS, BILLING], staging_schema="dr_s", whole_database=False)
    assert set(renamed["tables"]) == {"dr_s.appointments", "dr_s.billing"} and renamed["views"] == {}
    assert renamed["tables"]["dr_s.billing"]["foreign_keys"][0]["references"] == "dr_s.appointments"  # restored with it
    assert renamed["tables"]["dr_s.appointments"]["foreign_keys"][0]["references"] == "public.patients"  # production's
    assert renamed["tables"]["dr_s.appointments"]["rows"] == 8538 and renamed["session_settings"] == {"TimeZone": "UTC"}
    assert (
        BASELINES["tables"]["public.billing"]["foreign_keys"][0]["references"] == "public.appointments"
    )  # not mutated


def test_a_new_database_keeps_names_and_only_the_keys_among_restored_tables() -> None:
    some = baselines_for_restored(BASELINES, [BILLING], staging_schema=None, whole_database=False)
    assert list(some["tables"]) == ["public.billing"] and some["tables"]["public.billing"]["foreign_keys"] == []
    whole = baselines_for_restored(
        BASELINES, [TableName.parse(n) for n in BASELINES["tables"]], staging_schema=None, whole_database=True
    )
    assert whole["views"] == BASELINES["views"] and len(whole["tables"]["public.billing"]["foreign_keys"]) == 1
