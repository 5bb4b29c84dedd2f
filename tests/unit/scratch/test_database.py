"""Scratch databases: the restore target can never be production (decided from plain connection
facts), every name carries its kind's prefix, and nothing else can be created or dropped."""

from __future__ import annotations

import pytest

from hms_dr.errors import ParamInvalid
from hms_dr.pgtools import ConnectionInfo
from hms_dr.scratch.database import (
    ScratchDatabaseKind,
    create_scratch_database,
    drop_scratch_database,
    refuse_production_target,
    refuse_unless_scratch,
    scratch_database_name,
    scratch_kind_of,
)

PRODUCTION = ConnectionInfo("db.hospital.internal", 5432, "hms_backup", "hospital_management")
RESTORE_SERVER = ConnectionInfo("restore.hospital.internal", 5432, "postgres", "postgres")


def refuse(
    target: ConnectionInfo = RESTORE_SERVER, scratch: str = "hms_restore_test_x", target_id: str = "222"
) -> None:
    refuse_production_target(
        target=target,
        production=PRODUCTION,
        scratch_name=scratch,
        target_system_id=target_id,
        production_system_id="111",
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
    first = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "20261124T020001Z")
    second = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "20261124T020001Z")
    assert first != second and first.startswith("hms_restore_test_20261124t020001z_")
    refuse(scratch=first)


def test_a_dr_source_name_keeps_its_prefix_and_fits_postgresql_names() -> None:
    name = scratch_database_name(
        ScratchDatabaseKind.DR_SOURCE, "manual__2026_11_24t14_05_00_123456_00_00_and_more_of_it"
    )
    assert name.startswith("hms_dr_scratch_manual__2026_11_24t14_05_00_123456") and len(name) <= 63
    assert scratch_database_name(ScratchDatabaseKind.DR_SOURCE, "k") != scratch_database_name(
        ScratchDatabaseKind.DR_SOURCE, "k"
    )
    refuse(scratch=name)


@pytest.mark.parametrize("kind", list(ScratchDatabaseKind))
def test_every_name_made_is_known_as_its_own_kind(kind: ScratchDatabaseKind) -> None:
    assert scratch_kind_of(scratch_database_name(kind, "20261124T020001Z")) is kind


@pytest.mark.parametrize(
    "name",
    [
        "hospital_management",
        "postgres",
        "template1",
        "hms_restore_test_",
        "hms_dr_scratch_",
        "x_hms_restore_test_1",
        "HMS_RESTORE_TEST_1",
        "hms_restore_test_1; drop database hospital_management",
        "hms_dr_restore_x",
    ],
)
def test_anything_not_named_like_a_scratch_database_is_neither_created_nor_dropped(name: str) -> None:
    assert scratch_kind_of(name) is None
    with pytest.raises(
        ParamInvalid, match=r"refusing to drop .*: not a scratch database \(hms_restore_test_\* or hms_dr_scratch_\*\)"
    ):
        refuse_unless_scratch(name, "drop")
    # Refused before any connection is made: this address has no server.
    nowhere = ConnectionInfo("127.0.0.1", 1, "postgres", "postgres")
    with pytest.raises(ParamInvalid, match="refusing to drop"):
        drop_scratch_database(nowhere, name)
    with pytest.raises(ParamInvalid, match="refusing to create"):
        create_scratch_database(nowhere, name)
