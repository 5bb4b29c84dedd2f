"""A restore's progress reading on a real server: pg_database_size of the database being filled,
read when a progress line is due, and never an error that could stop the restore it reports on."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from test_base_backup import connection

from hms_dr.restore import restored_bytes

pytestmark = pytest.mark.integration


def test_the_restored_size_is_read_from_the_server_and_a_refused_login_repeats_the_last_reading(
    sandbox: Any,
) -> None:
    dsn = sandbox.superuser_dsn("hospital_management")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    reading = restored_bytes(connection(dsn))()
    assert abs(reading - int(row[0])) <= 1 << 20 and reading > 1 << 20
    refused = restored_bytes(connection(dsn, password=secrets.token_hex(16)))  # a wrong one, made up here
    assert refused() == 0 and refused() == 0  # logged at debug, never raised
