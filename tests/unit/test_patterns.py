"""One pattern per thing a form and the engine both check: what an integrity report suggests, the
DR form takes; what a form accepts, the engine reads the same way."""

from __future__ import annotations

import re

import pytest

from hms_dr.integrity import suggested_restore
from hms_dr.names import parse_relation_name
from hms_dr.patterns import BACKUP_ID, BACKUP_SET_ID, TABLE, matcher, whole


def test_an_integrity_reports_dr_request_names_tables_as_the_dr_form_takes_them() -> None:
    keys = ["public.appointments", "public.Order Details", "Audit Trail.Entries", "sales.q1"]
    tables = suggested_restore(keys, report_id="20261202T060000Z")["tables"]

    assert tables == ["appointments", '"Order Details"', '"Audit Trail"."Entries"', "sales.q1"]
    form = re.compile(whole(TABLE))  # the JSON-schema pattern of hms_dr_restore's tables
    assert all(form.match(table) for table in tables)
    parsed = [parse_relation_name(table) for table in tables]
    assert [(p.schema or "public", p.name) for p in parsed] == [tuple(k.split(".", 1)) for k in keys]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("latest", True),
        ("20261202T020001Z", True),
        ("20261202T020001", False),
        ("latest ", False),
        ("Latest", False),
    ],
)
def test_a_backup_id_is_latest_or_a_set_id_in_the_form_and_in_the_engine(text: str, ok: bool) -> None:
    assert bool(re.match(whole(BACKUP_ID), text)) is ok
    assert bool(matcher(BACKUP_ID).fullmatch(text)) is ok
    assert bool(matcher(BACKUP_SET_ID).fullmatch(text)) is (ok and text != "latest")


@pytest.mark.parametrize("text", ["a.b.c", '"unclosed', "Order Details", 'public."x"y', "é"])
def test_a_malformed_table_name_is_refused_by_the_form_pattern_and_by_the_engine(text: str) -> None:
    assert not re.match(whole(TABLE), text)
    with pytest.raises(ValueError):
        parse_relation_name(text)  # é: an unquoted name is plain ASCII
