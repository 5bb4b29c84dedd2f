"""The restore target can never be production: decided from plain connection facts."""

from __future__ import annotations

import pytest

from hms_dr.errors import ParamInvalid
from hms_dr.pgtools import ConnectionInfo
from hms_dr.restore import pg_restore_argv, refuse_production_target, scratch_database_name

PRODUCTION = ConnectionInfo("db.hospital.internal", 5432, "hms_backup", "hospital_management")
RESTORE_SERVER = ConnectionInfo("restore.hospital.internal", 5432, "postgres", "postgres")


def refuse(target: ConnectionInfo = RESTORE_SERVER, scratch: str = "hms_restore_test_x", target_id: str = "222") -> None:
    refuse_production_target(
        target=target, production=PRODUCTION, scratch_name=scratch, target_system_id=target_id, production_system_id="111"
    )


def test_an_isolated_server_and_a_scratch_name_are_accepted() -> None:
    refuse()


def test_a_scratch_name_equal_to_the_production_database_is_refused() -> None:
    with pytest.raises(ParamInvalid, match="is the production database's name"):
        refuse(scratch="hospital_management")


def test_a_target_connection_to_the_production_database_is_refused() -> None:
    with pytest.raises(ParamInvalid, match="is the production database"):
        refuse(target=ConnectionInfo("db.hospital.internal", 5432, "postgres", "hospital_management"), target_id=None)  # type: ignore[arg-type]


def test_a_target_on_the_production_cluster_under_another_name_is_refused() -> None:
    with pytest.raises(ParamInvalid, match="is the production cluster"):
        refuse(target=ConnectionInfo("10.0.0.5", 5432, "postgres", "postgres"), target_id="111")


@pytest.mark.parametrize("name", ["x; DROP DATABASE hospital_management", "Hms", 'a"b', ""])
def test_scratch_names_that_are_not_plain_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ParamInvalid):
        refuse(scratch=name)


def test_scratch_names_are_unique_and_plain() -> None:
    first, second = scratch_database_name("20261124T020001Z"), scratch_database_name("20261124T020001Z")
    assert first != second and first.startswith("hms_restore_test_20261124t020001z_")
    refuse(scratch=first)


def test_pg_restore_runs_parallel_and_stops_at_the_first_error() -> None:
    from pathlib import Path

    argv = pg_restore_argv(Path("/tmp/dump.plain"), dbname="hms_restore_test_x", jobs=4)
    assert "--exit-on-error" in argv and "--jobs=4" in argv and "--dbname=hms_restore_test_x" in argv
