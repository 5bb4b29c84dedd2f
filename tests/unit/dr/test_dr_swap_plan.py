"""The swap's plan, from catalog rows: the order of its statements, what follows the restored
table (foreign keys, views, grants, owner, sequences), what it refuses, and its digest."""

from __future__ import annotations

from dataclasses import replace

from hms_dr.dr.report import approval_body
from hms_dr.dr.request import TableName
from hms_dr.dr.swap_plan import DependentView, ForeignKey, Grant, OwnedSequence, SwapTable, TableSide, plan_swap

Q, S = "dr_quarantine_run1", "dr_staging_run1"
APPOINTMENTS = TableName("public", "appointments")
COLUMNS = (("id", "bigint", True), ("patient_id", "bigint", True), ("reason", "text", True))


def a_pair(**production_overrides: object) -> SwapTable:
    production = TableSide(
        APPOINTMENTS,
        100,
        owner="hms_admin",
        columns=COLUMNS,
        grants=(
            Grant("hms_app", "SELECT"),
            Grant("hms_app", "INSERT"),
            Grant("PUBLIC", "SELECT", column="reason"),
            Grant("report ing", "SELECT", grantable=True),
        ),
        sequences=(OwnedSequence("id", TableName("public", "appointments_id_seq"), (Grant("hms_app", "USAGE"),)),),
        foreign_keys=(
            ForeignKey(
                APPOINTMENTS, "appointments_patient_id_fkey", "FOREIGN KEY (patient_id) REFERENCES public.patients(id)"
            ),
        ),
        parts=(("constraint", "appointments_pkey"), ("index", "appointments_pkey"), ("index", "appointments_new_idx")),
    )
    production = replace(production, **production_overrides)  # type: ignore[arg-type]
    restored = TableSide(
        TableName(S, "appointments"),
        200,
        owner="postgres",
        columns=COLUMNS,
        sequences=(OwnedSequence("id", TableName(S, "appointments_id_seq")),),
        parts=(("constraint", "appointments_pkey"), ("index", "appointments_pkey")),
    )
    return SwapTable(
        production,
        restored,
        referencing=(
            ForeignKey(
                TableName("public", "billing"),
                "billing_appointment_id_fkey",
                "FOREIGN KEY (appointment_id) REFERENCES public.appointments(id)",
            ),
        ),
        views=(
            DependentView(
                TableName("public", "v_patient_summary"),
                "v",
                " SELECT count(*) FROM public.appointments;",
                ("security_barrier=true",),
            ),
        ),
    )


def test_the_swap_moves_tables_then_restores_ownership_keys_and_views_in_order() -> None:
    plan = plan_swap([a_pair()], quarantine_schema=Q, staging_schema=S)
    assert plan.refusals == ()
    sql = [s.sql for s in plan.statements]
    assert sql[0] == f'CREATE SCHEMA "{Q}"'
    assert sql[1] == 'ALTER TABLE "public"."billing" DROP CONSTRAINT "billing_appointment_id_fkey"'
    assert sql[2] == f'ALTER TABLE "public"."appointments" SET SCHEMA "{Q}"'
    assert sql[3] == f'ALTER TABLE "{S}"."appointments" SET SCHEMA "public"'
    assert sql[4] == 'ALTER TABLE "public"."appointments" OWNER TO "hms_admin"'
    assert 'GRANT SELECT ON TABLE "public"."appointments" TO "hms_app"' in sql
    assert 'GRANT SELECT ("reason") ON TABLE "public"."appointments" TO PUBLIC' in sql
    assert 'GRANT SELECT ON TABLE "public"."appointments" TO "report ing" WITH GRANT OPTION' in sql
    assert 'GRANT USAGE ON SEQUENCE "public"."appointments_id_seq" TO "hms_app"' in sql
    setval = next(s for s in sql if "setval" in s)
    assert f'\'"{Q}"."appointments_id_seq"\'' in setval and 'GREATEST(pg_catalog.max("id")' in setval
    own_fk = sql.index(
        'ALTER TABLE "public"."appointments" ADD CONSTRAINT "appointments_patient_id_fkey" '
        "FOREIGN KEY (patient_id) REFERENCES public.patients(id)"
    )
    their_fk = sql.index(
        'ALTER TABLE "public"."billing" ADD CONSTRAINT "billing_appointment_id_fkey" '
        "FOREIGN KEY (appointment_id) REFERENCES public.appointments(id)"
    )
    view = sql.index(
        'CREATE OR REPLACE VIEW "public"."v_patient_summary" WITH (security_barrier=true) AS SELECT count(*) FROM public.appointments'
    )
    assert 4 < own_fk < their_fk < view == len(sql) - 1
    assert not any("DROP TABLE" in s or "TRUNCATE" in s or "DELETE" in s for s in sql)


def test_differences_in_indexes_and_triggers_are_shown_as_warnings() -> None:
    plan = plan_swap([a_pair()], quarantine_schema=Q, staging_schema=S)
    assert plan.warnings == (
        "index appointments_new_idx of production's public.appointments is not on the restored table "
        "(it was created after the backup)",
    )


def test_what_the_swap_cannot_carry_over_is_refused_by_name() -> None:
    pair = a_pair(columns=(*COLUMNS, ("booked_by", "text", False)), publications=("hms_pub",))
    pair = replace(
        pair,
        views=(*pair.views, DependentView(TableName("public", "mv_daily"), "m", "SELECT 1")),
        unhandled=("policy p_own on table public.billing",),
    )
    refusals = " | ".join(plan_swap([pair], quarantine_schema=Q, staging_schema=S).refusals)
    assert (
        "has columns (id bigint, patient_id bigint, reason text, booked_by text) in production but (id bigint"
        in refusals
    )
    assert "is published (hms_pub)" in refusals
    assert "materialized view public.mv_daily reads public.appointments" in refusals
    assert "policy p_own on table public.billing depends on public.appointments" in refusals
    partitioned = a_pair(partitioned_or_inherited=True, relkind="p")
    assert any("partitioned" in r for r in plan_swap([partitioned], quarantine_schema=Q, staging_schema=S).refusals)


def test_the_digest_changes_when_production_changes_and_only_then() -> None:
    first = plan_swap([a_pair()], quarantine_schema=Q, staging_schema=S)
    again = plan_swap([a_pair()], quarantine_schema=Q, staging_schema=S)
    granted = plan_swap([a_pair(grants=(Grant("hms_app", "SELECT"),))], quarantine_schema=Q, staging_schema=S)
    assert first.digest == again.digest != granted.digest


def test_two_swapped_tables_keep_their_mutual_foreign_key_through_their_own_definitions() -> None:
    billing = TableName("public", "billing")
    pair_a = replace(a_pair(), referencing=())
    pair_b = SwapTable(
        TableSide(
            billing,
            101,
            owner="hms_admin",
            columns=COLUMNS,
            foreign_keys=(
                ForeignKey(
                    billing,
                    "billing_appointment_id_fkey",
                    "FOREIGN KEY (appointment_id) REFERENCES public.appointments(id)",
                ),
            ),
        ),
        TableSide(TableName(S, "billing"), 201, columns=COLUMNS),
    )
    sql = [s.sql for s in plan_swap([pair_a, pair_b], quarantine_schema=Q, staging_schema=S).statements]
    assert not any("DROP CONSTRAINT" in s for s in sql)
    assert sum('ADD CONSTRAINT "billing_appointment_id_fkey"' in s for s in sql) == 1


def test_the_approval_body_shows_counts_now_and_restored_and_every_statement() -> None:
    plan = plan_swap([a_pair()], quarantine_schema=Q, staging_schema=S)
    body = approval_body(
        {
            "source": "logical_backup",
            "backup_set_id": "20261124T020001Z",
            "staging_schema": S,
            "reason": "rows *deleted* at 14:00 <b>",
        },
        plan.summary(),
        rows_now={"public.appointments": 7723},
        rows_restored={"public.appointments": 8538},
        checks={"passed": True, "checks": [{}] * 7, "failed": []},
        triggered_by="dba.alice",
        run_id="manual__1",
        measured_at="2026-11-24 14:20:00 UTC",
    )
    assert "| `public.appointments` | 7,723 | 8,538 | +815 |" in body
    assert "Quality checks: 7 of 7 passed." in body and "dba.alice" in body
    assert f"`{Q}`" in body and "nothing is dropped" in body
    assert "\\*deleted\\* at 14:00 \\<b\\>" in body  # an operator's text is shown, never rendered
    assert body.count("\n-- ") == len(plan.statements) and plan.digest[:16] in body
    assert "billing.billing_appointment_id_fkey" in body and "public.v_patient_summary" in body
