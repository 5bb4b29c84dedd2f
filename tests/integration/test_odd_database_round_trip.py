"""A database nobody at the hospital wrote (odd_schema.sql: a partitioned table with a
sub-partitioned partition, a second schema, a mixed-case table, a table named with a space, a
table without a primary key, a domain, an enum, a view, a materialized view, a trigger and a
large object) backs up as the daily DAG does it (preflight, one snapshot, publication), with its
odd names in the policy as SQL spells them; its restore test is green; and a DR restore of
public."Order Details" into a staging schema passes its checks. The engine runs directly, on a
scratch cluster of its own and a file store.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from odd_database import (
    IN_ODD_SCHEMA,
    LEAF_PARTITIONS,
    MIXED_CASE,
    PARTITIONED,
    SPACED,
    WITHOUT_PRIMARY_KEY,
    OddDatabase,
    create_odd_database,
    odd_policy,
    symmetric_keys,
)
from psycopg import sql
from psycopg.conninfo import make_conninfo

from hms_dr import preflight, restore
from hms_dr.catalog import find_set
from hms_dr.dr import copy as dr_copy
from hms_dr.dr import staging
from hms_dr.dr.request import TableName, TargetFacts, parse_request, resolve_request
from hms_dr.dr.verify import baselines_for_restored
from hms_dr.logical import publish_logical_sets, take_logical_backup
from hms_dr.manifest import BackupKind
from hms_dr.pginstalls import newest_install
from hms_dr.pgtools import ConnectionInfo, parse_restore_list
from hms_dr.quality import check_restored_database
from hms_dr.scratch.database import ScratchDatabaseKind, create_scratch_database, scratch_database_name
from hms_dr.store import open_store

pytestmark = pytest.mark.integration

CLUSTER = "odd-objects"
NOW_REASON = "a clerk deleted the order details of a customer by mistake"


@pytest.fixture(scope="module")
def odd(scratch_cluster: str) -> OddDatabase:
    return create_odd_database(scratch_cluster, "odd_source")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("odd")


@pytest.fixture(scope="module")
def backed_up(odd: OddDatabase, workdir: Path) -> dict[str, Any]:
    """Preflight, the dumps in one snapshot and the manifests, as the daily DAG's tasks run them."""
    policy = odd_policy(
        cluster_name=CLUSTER,
        database=odd.name,
        store_url=f"file://{workdir / 'store'}",
        staging_dir=workdir / "staging",
    )
    (workdir / "store").mkdir()
    store = open_store(policy.store.primary_url)
    encryption, decryption = symmetric_keys()
    sections = {
        "cluster": policy.cluster.name,
        "logical_backup": policy.logical_backup,
        "compression": policy.compression,
        "staging": policy.staging,
    }
    checked = preflight.run_preflight(odd.backup, store, encryption, **sections)
    result = take_logical_backup(odd.backup, store, encryption, **sections)
    publish_logical_sets(store, result, {"dag_id": "test", "run_id": "odd objects"})
    return {
        "policy": policy,
        "store": store,
        "key": decryption,
        "preflight": checked,
        "result": result,
        "set": find_set(store, CLUSTER, BackupKind.LOGICAL, result.backup_set_id),
    }


def scratch_database(
    scratch_cluster: str, backed_up: dict[str, Any], workdir: Path, kind: BackupKind = BackupKind.LOGICAL
) -> str:
    """A new database with the set's payload pg_restored into it, as the restore test does: its name."""
    backup_set = find_set(backed_up["store"], CLUSTER, kind, backed_up["set"].backup_set_id)
    fetched = restore.fetch_for_restore(
        backed_up["store"], backup_set, backed_up["key"], workdir / f"fetch-{kind.value}"
    )
    admin = connection_info(scratch_cluster)
    name = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, "odd")
    create_scratch_database(admin, name)
    restore.run_pg_restore(admin.with_database(name), fetched.path, jobs=2)
    fetched.path.unlink()
    return name


def connection_info(dsn: str) -> ConnectionInfo:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    return ConnectionInfo(
        str(p["host"]), int(p["port"]), str(p["user"]), str(p.get("dbname", "postgres")), str(p["password"])
    )


def query(dsn: str, text: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(text, args or None).fetchall()  # type: ignore[arg-type]  # the test's own fixed SQL


def test_preflight_finds_the_large_object_readable_once_granted(backed_up: dict[str, Any]) -> None:
    assert backed_up["preflight"]["large_objects"] == 1


def test_the_baselines_hold_every_odd_table_by_its_catalog_name(backed_up: dict[str, Any]) -> None:
    baselines = backed_up["set"].manifest.baselines
    tables = baselines["tables"]
    assert {
        PARTITIONED,
        *LEAF_PARTITIONS,
        "sales.measurements_2025",
        SPACED,
        MIXED_CASE,
        WITHOUT_PRIMARY_KEY,
        IN_ODD_SCHEMA,
    } <= set(tables)
    assert tables[PARTITIONED]["relkind"] == "p" and tables[PARTITIONED]["rows"] == 0  # its rows are its partitions'
    assert sum(tables[leaf]["rows"] for leaf in LEAF_PARTITIONS) == 1000
    assert tables[SPACED]["rows"] == 300 and tables[WITHOUT_PRIMARY_KEY]["primary_key"] is None
    # A view, a materialized view and a table, named in the policy as SQL spells them.
    assert set(baselines["views"]) == {"public.paid_orders", "sales.readings_by_region", MIXED_CASE}


def test_the_data_only_export_holds_every_partitions_rows_and_the_spaced_and_mixed_case_tables(
    backed_up: dict[str, Any], workdir: Path
) -> None:
    data_set = find_set(backed_up["store"], CLUSTER, BackupKind.DATA, backed_up["set"].backup_set_id)
    assert set(data_set.manifest.baselines["tables"]) == {
        PARTITIONED,
        "sales.measurements_2025",
        *LEAF_PARTITIONS,
        SPACED,
        MIXED_CASE,
    }
    fetched = restore.fetch_for_restore(backed_up["store"], data_set, backed_up["key"], workdir / "fetch-data-listing")
    listing = subprocess.run(
        [newest_install().program("pg_restore"), "--list", str(fetched.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fetched.path.unlink()
    expected = {tuple(key.split(".", 1)) for key in (*LEAF_PARTITIONS, SPACED, MIXED_CASE)}
    listed = {(s, n) for d, s, n in parse_restore_list(listing, expected) if d == "TABLE DATA"}
    assert listed == expected


def test_the_whole_database_restores_and_its_restore_test_is_green(
    scratch_cluster: str, backed_up: dict[str, Any], workdir: Path
) -> None:
    name = scratch_database(scratch_cluster, backed_up, workdir)
    dsn = make_conninfo(scratch_cluster, dbname=name)
    try:
        summary = check_restored_database(
            dsn,
            backed_up["set"].manifest.baselines,
            report_dir=workdir / "report",
            backup_set_id=backed_up["set"].backup_set_id,
            smoke_queries=(),
        )
        assert summary["failed"] == [] and summary["passed"]
        targets = {check["target"] for check in summary["checks"]}
        assert {
            SPACED,
            MIXED_CASE,
            WITHOUT_PRIMARY_KEY,
            IN_ODD_SCHEMA,
            "sales.measurements_2025 North",
            "sales.readings_by_region",
        } <= targets
        rows_checks = {c["target"]: c for c in summary["checks"] if c["check"] == "row_count"}
        assert rows_checks[IN_ODD_SCHEMA]["observed"] == 12
        # The large object came back with its bytes; the materialized view with its rows.
        assert query(dsn, "SELECT lo_get(oid) FROM pg_largeobject_metadata") == [
            (b"%PDF-1.4 scanned consent form, page 1 of 1\x00\xff",)
        ]
        assert query(dsn, "SELECT sum(readings) FROM sales.readings_by_region") == [(1000,)]
        assert query(dsn, 'SELECT count(*) FROM public."Order Details" WHERE "Note" = %s', "no note") == [(225,)]
    finally:
        with psycopg.connect(scratch_cluster, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_dr_restore_of_the_spaced_table_into_a_staging_schema_passes_its_checks(
    scratch_cluster: str, odd: OddDatabase, backed_up: dict[str, Any], workdir: Path
) -> None:
    baselines = backed_up["set"].manifest.baselines
    request = parse_request(
        {"tables": 'public."Order Details"', "reason": NOW_REASON},
        run_id="manual__odd",
        now=backed_up["set"].finished_at,
    )
    facts = TargetFacts(odd.name, frozenset(baselines["tables"]), frozenset({"public", "sales"}))
    plan = resolve_request(
        request,
        facts,
        set_tables=list(baselines["tables"]),
        backup_set_id=backed_up["set"].backup_set_id,
        where="the odd set",
    )
    assert plan.tables == (TableName("public", "Order Details"),)
    assert request.staging_schema is not None

    source_name = scratch_database(scratch_cluster, backed_up, workdir)
    source = connection_info(scratch_cluster).with_database(source_name)
    production = connection_info(scratch_cluster).with_database(odd.name)
    try:
        staging.stage_tables_in_source(source, plan.tables, request.staging_schema)
        dr_copy.copy_objects(source, production, schema=request.staging_schema)
    finally:
        with psycopg.connect(scratch_cluster, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(source_name)))
    restored = baselines_for_restored(
        baselines, plan.tables, staging_schema=request.staging_schema, whole_database=False
    )
    assert list(restored["tables"]) == [f"{request.staging_schema}.Order Details"]
    summary = check_restored_database(
        production.libpq_dsn(),
        restored,
        report_dir=workdir / "dr-report",
        backup_set_id=backed_up["set"].backup_set_id,
        smoke_queries=(),
    )
    assert summary["failed"] == [] and summary["passed"]
    staged = sql.Identifier(request.staging_schema, "Order Details").as_string(None)
    assert query(odd.superuser_dsn, f"SELECT count(*), sum(amount) FROM {staged}") == query(
        odd.superuser_dsn, 'SELECT count(*), sum(amount) FROM public."Order Details"'
    )
