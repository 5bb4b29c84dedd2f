"""pg_read_all_data does not cover large objects: the backup's preflight refuses, in one line
naming the GRANT to run, while the backup role cannot read one, and passes once it is run. With
many, the line holds a DO block that grants them all, and running it is enough."""

from __future__ import annotations

import psycopg
import pytest
from odd_database import BACKUP_ROLE, LARGE_OBJECT_OWNER, OddDatabase, create_large_object, create_odd_database
from psycopg import sql

from hms_dr.database import connect
from hms_dr.errors import PreflightFailed
from hms_dr.preflight import check_large_objects_readable

pytestmark = pytest.mark.integration


def check_as_backup_role(odd: OddDatabase) -> int:
    with connect(odd.backup) as connection, connection.cursor() as cursor:
        return check_large_objects_readable(cursor)


def test_an_ungranted_large_object_is_refused_naming_the_grant_then_passes_once_granted(scratch_cluster: str) -> None:
    odd = create_odd_database(scratch_cluster, "odd_large_objects")
    with psycopg.connect(odd.superuser_dsn, autocommit=True) as conn:
        oid = create_large_object(conn, b"not granted yet")
    with pytest.raises(PreflightFailed) as caught:
        check_as_backup_role(odd)
    grant = f"GRANT SELECT ON LARGE OBJECT {oid} TO {BACKUP_ROLE};"
    assert caught.value.hint == grant and "\n" not in caught.value.message
    assert f"cannot read 1 of 2 large object(s) (oid {oid})" in caught.value.message
    with psycopg.connect(odd.superuser_dsn, autocommit=True) as conn:
        conn.execute(grant)  # type: ignore[arg-type]  # the very statement the error named
    assert check_as_backup_role(odd) == 2

    # Several: a GRANT each; many: the DO block in the hint grants them all.
    with psycopg.connect(odd.superuser_dsn, autocommit=True) as conn:
        for n in range(3):
            create_large_object(conn, f"scan {n}".encode())
    with pytest.raises(PreflightFailed) as caught:
        check_as_backup_role(odd)
    assert f"backup role {BACKUP_ROLE} cannot read 3 of 5 large object(s)" in caught.value.message
    assert caught.value.hint is not None and caught.value.hint.count("GRANT SELECT ON LARGE OBJECT") == 3
    with psycopg.connect(odd.superuser_dsn, autocommit=True) as conn:
        for _ in range(2):
            create_large_object(conn, b"two more")
    with pytest.raises(PreflightFailed) as caught:
        check_as_backup_role(odd)
    assert caught.value.hint is not None and caught.value.hint.startswith("DO $$")  # many: one block for them all
    do_block = caught.value.hint
    with psycopg.connect(odd.superuser_dsn, autocommit=True) as conn:
        conn.execute(do_block)  # type: ignore[arg-type]
    assert check_as_backup_role(odd) == 7


def test_a_large_object_granted_to_public_or_to_a_role_the_backup_role_is_in_is_readable(scratch_cluster: str) -> None:
    odd = create_odd_database(scratch_cluster, "odd_lo_roles")
    with psycopg.connect(odd.superuser_dsn, autocommit=True) as conn:
        public_oid = create_large_object(conn, b"for everyone")
        conn.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO PUBLIC").format(sql.Literal(public_oid)))
        conn.execute("CREATE ROLE odd_readers")
        conn.execute(sql.SQL("GRANT odd_readers TO {}").format(sql.Identifier(BACKUP_ROLE)))
        group_oid = create_large_object(conn, b"for the readers")
        conn.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO odd_readers").format(sql.Literal(group_oid)))
        assert check_as_backup_role(odd) == 3  # and the one the odd database grants by name
        # Membership in the owner's role is ownership's privileges (roles are per cluster: undone after).
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(LARGE_OBJECT_OWNER), sql.Identifier(BACKUP_ROLE)))
        try:
            create_large_object(conn, b"readable as a member of its owner")
            assert check_as_backup_role(odd) == 4
        finally:
            conn.execute(
                sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(LARGE_OBJECT_OWNER), sql.Identifier(BACKUP_ROLE))
            )
            conn.execute(sql.SQL("REVOKE odd_readers FROM {}").format(sql.Identifier(BACKUP_ROLE)))
