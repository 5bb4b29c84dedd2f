#!/usr/bin/env python3
"""What does an incremental base backup (PostgreSQL 17+) save, and what does its chain cost a
point-in-time recovery?

On a PostgreSQL 18 bench sandbox (an HMS database of ≥ 1 GB in <repo>/.sandbox-bench-pg18,
summarize_wal on), in one run and on the same data:

1. a FULL base backup through the engine (``take_base_backup``, backup_type full: pg_basebackup,
   pg_verifybackup, zstd | gpg, upload, read-back, manifest), and a bare ``pg_basebackup -Ft``;
2. about 1 % of the database's pages changed: every row of every 1000th page holding live rows
   rewritten (``UPDATE ... SET <first unindexed column> = itself``; ``--page-stride``), which with
   the rows' new versions and index entries changes ~1 % of the pages; a checkpoint; the blocks
   changed are counted from PostgreSQL's WAL summaries (what the incremental must copy);
3. an INCREMENTAL base backup through the engine against the full set, and a bare
   ``pg_basebackup --incremental`` against the bare full's backup_manifest.
   Goals: time ≤ 20 % and stored size ≤ 10 % of the full's;
4. five more rounds of 1 % changes + incremental (a chain of the full and 6 incrementals), a
   marker row, the WAL shipped to the store (the engine's ``ship_spool``);
5. point-in-time recovery (``recover``, the engine's hms_dr_pitr path) to the same target after
   the marker: from the full alone (its WAL replayed from the full's start) and from the chain
   (pg_combinebackup of the 7 sets, WAL from the last incremental's start). Both recovered
   clusters must hold the marker. Goal: chain RTO ≤ 1.3 × the full alone's.

Writes bench/results/<date>-incremental-base-backup.md.

    PYTHONPATH=plugins:sandbox .venv/bin/python bench/incremental_base_backup.py [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import fmt_mb, markdown_table

NAME = "incremental-base-backup"
PG_MAJOR = 18
CHAIN_INCREMENTALS = 6
TIME_GOAL = 0.20
SIZE_GOAL = 0.10
RTO_GOAL = 1.3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-mb", type=float, default=1100, help="HMS data scale of the first load (≥ 1 GB)")
    parser.add_argument(
        "--page-stride",
        type=int,
        default=1000,
        help="rewrite the rows of every Nth page holding live rows (default 1000: with the rows' index entries "
        "and the moved row versions, about 1 %% of the database's pages as the WAL summaries count them)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox running")
    parser.add_argument("--verbose", action="store_true", help="print the engine's INFO log lines")
    return parser.parse_args()


def change_pages(dsn: str, stride: int) -> dict[str, int]:
    """Rewrite every row of every ``stride``-th page holding live rows, in each table of ``stride``+
    pages; the rows and heap pages rewritten. A rewritten row is a new version (on its page when
    there is room, else on another) with new entries in every index: the blocks changed in all
    are counted afterwards from the WAL summaries."""
    import psycopg
    from psycopg import sql

    rows = pages = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            # The first plain column in no index: the update rewrites the row (HOT, on its page)
            # without touching index pages, so the pages changed are the heap's 1 %.
            """SELECT c.oid::regclass::text, c.relpages, col.attname
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 CROSS JOIN LATERAL (
                     SELECT a.attname FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                        AND a.attidentity = '' AND a.attgenerated = ''
                        AND NOT EXISTS (SELECT 1 FROM pg_index i
                                         WHERE i.indrelid = c.oid AND a.attnum = ANY (i.indkey))
                      ORDER BY a.attnum LIMIT 1) col
                WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND c.relpages >= %s""",
            (stride,),
        ).fetchall()
        for table, relpages, column in tables:
            done = conn.execute(
                # Every stride-th page that holds live rows (by position, whatever earlier runs of
                # this bench moved), all of its rows.
                sql.SQL(
                    "UPDATE {t} SET {c} = {c} WHERE ((ctid::text::point)[0])::bigint IN ("
                    " SELECT page FROM (SELECT page, row_number() OVER (ORDER BY page) AS n"
                    " FROM (SELECT DISTINCT ((ctid::text::point)[0])::bigint AS page FROM {t}) live) ranked"
                    " WHERE n % {share} = 0)"
                ).format(t=sql.SQL(table), c=sql.Identifier(column), share=sql.Literal(stride))
            )
            rows += done.rowcount
            pages += relpages // stride
        conn.execute("CHECKPOINT")
    return {"rows": rows, "pages": pages}


def blocks_changed_between(dsn: str, start_lsn: str, end_lsn: str) -> int:
    """Blocks PostgreSQL's own WAL summaries (what pg_basebackup --incremental reads) record as
    modified between two backups' start LSNs, every relation and fork of the cluster: the pages
    the later incremental had to copy. pg_basebackup waited for the summarizer to reach its own
    start, so the summaries of that range are complete."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(
            conn.execute(
                """SELECT count(*) FROM (
                       SELECT DISTINCT s.reltablespace, s.reldatabase, s.relfilenode, s.relforknumber, s.relblocknumber
                         FROM pg_available_wal_summaries() w,
                              pg_wal_summary_contents(w.tli, w.start_lsn, w.end_lsn) s
                        WHERE w.end_lsn > %s::pg_lsn AND w.start_lsn < %s::pg_lsn
                          AND NOT s.is_limit_block) changed""",
                (start_lsn, end_lsn),
            ).fetchone()[0]  # type: ignore[index]
        )


def cluster_pages(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return int(
            conn.execute(
                "SELECT sum(pg_relation_size(oid, 'main')) / 8192 FROM pg_class WHERE relkind IN ('r', 'i', 't', 'm')"
            ).fetchone()[0]  # type: ignore[index]
        )


def take(conn: Any, store: Any, sandbox: Any, policy: Any, backup_type: str) -> dict[str, Any]:
    from hms_dr.physical.incremental import BackupTypeRequest

    time.sleep(1.1)  # set ids are UTC seconds: two sets of one second would share a folder (refused)
    started = time.monotonic()
    result = benchlib.take_weekly_base_backup(
        conn, sandbox, policy, store, backup_type=BackupTypeRequest(backup_type), incremental_enabled=True
    )
    wall = time.monotonic() - started
    base = result["base_backup"]
    assert base["backup_type"] == backup_type, f"asked for {backup_type}, took {base['backup_type']}"
    print(
        f"engine {backup_type:11s} {wall:6.1f} s  {fmt_mb(result['sizes']['stored_bytes'])} stored "
        f"({fmt_mb(result['sizes']['plain_bytes'])} plain)  set {result['backup_set_id']}",
        flush=True,
    )
    return {"wall": wall, "result": result}


def bare_pg_basebackup(conn: Any, target: Path, incremental_from: Path | None = None) -> dict[str, Any]:
    from hms_dr.pgtools import tool_env

    extra = [f"--incremental={incremental_from}"] if incremental_from is not None else []
    argv = benchlib.bare_pg_basebackup_argv(conn, target, *extra)
    started = time.monotonic()
    subprocess.run(argv, env=tool_env(conn), stdin=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - started
    size = sum(p.stat().st_size for p in target.iterdir())
    print(
        f"bare   {'incremental' if incremental_from else 'full':11s} {wall:6.1f} s  {fmt_mb(size)} on disk", flush=True
    )
    return {"wall": wall, "size": size}


def ship_wal_to_target(sandbox: Any, store: Any, policy: Any, superuser_dsn: str) -> datetime:
    """A marker row, the time just after it, the segment switched, archived and shipped."""
    import psycopg

    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_marker (id text PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO bench_marker (id) VALUES (%s)", (MARKER,))
        time.sleep(1.1)
        target = datetime.now(UTC)
        time.sleep(1.1)
        conn.execute("INSERT INTO bench_marker (id) VALUES (%s)", (MARKER + "-after",))
    benchlib.switch_and_archive_wal(sandbox, superuser_dsn)
    started = time.monotonic()
    benchlib.ship_wal(sandbox, store, policy)
    print(f"WAL shipped to the store in {time.monotonic() - started:.1f} s", flush=True)
    return target


MARKER = f"bench-{uuid.uuid4().hex[:8]}"


def recover_to(store: Any, sandbox: Any, policy: Any, target_time: datetime, workdir: Path, set_id: str) -> dict:
    import psycopg

    from hms_dr.physical.recovery import recover
    from hms_dr.physical.targets import RecoveryTarget, TargetKind
    from hms_dr.server_user import free_port
    from hms_sandbox.cluster import LocalCluster

    home = workdir / f"pitr-{set_id}"
    started = time.monotonic()
    result = recover(
        store,
        policy.cluster.name,
        RecoveryTarget(TargetKind.TIME, time=target_time),
        data_dir=home / "data",
        port=free_port(),
        decryption_key=benchlib.decryption_key(sandbox),
        staging_dir=policy.staging.dir,
        backup_set_id=set_id,
        socket_dir=home / "s",
    )
    wall = time.monotonic() - started
    cluster = LocalCluster(
        Path(result["data_dir"]), result["port"], Path(result["log_file"]), Path(result["socket_dir"])
    )
    dsn = cluster.dsn("postgres", sandbox.secrets.role_passwords["postgres"], sandbox.database)
    try:
        with psycopg.connect(dsn) as conn:
            markers = {row[0] for row in conn.execute("SELECT id FROM bench_marker").fetchall()}
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
    assert MARKER in markers and MARKER + "-after" not in markers, f"recovered markers {markers}"
    print(f"recovered from {set_id} in {wall:.1f} s: {result['seconds']}", flush=True)
    return {"wall": wall, "seconds": result["seconds"], "chain": result.get("chain")}


def main() -> int:
    args = parse_args()
    benchlib.configure_logging(args.verbose)
    from hms_dr.policy import load_policy

    sandbox = benchlib.start_bench_sandbox(args.scale_mb, pg_major=PG_MAJOR)
    try:
        policy = load_policy(sandbox.paths.policy_file)
        conn = benchlib.replication_connection(sandbox)
        db_size = benchlib.database_size(benchlib.backup_connection(sandbox))
        superuser_dsn = sandbox.superuser_dsn(sandbox.database)
        machine = benchlib.machine_info()
        pg_version = benchlib.server_version(benchlib.backup_connection(sandbox))
        store = benchlib.empty_primary_store(sandbox, policy)
        with tempfile.TemporaryDirectory(prefix="bench-incr-", dir=benchlib.bench_state_dir(PG_MAJOR)) as tmp:
            workdir = Path(tmp)
            workdir.chmod(0o711)  # the recovered servers' directories live here
            # Not timed: the rows an earlier run of this bench rewrote left dead versions; VACUUM frees
            # them, so every run starts from a table whose pages hold only live rows and free space.
            benchlib.vacuum(superuser_dsn)
            bare_full = bare_pg_basebackup(conn, workdir / "bare-full")
            full = take(conn, store, sandbox, policy, "full")
            benchlib.drop_spool_before(sandbox, full["result"]["base_backup"]["start_wal_file"])
            changed = change_pages(superuser_dsn, args.page_stride)
            incremental = take(conn, store, sandbox, policy, "incremental")
            changed["blocks"] = blocks_changed_between(
                superuser_dsn,
                full["result"]["base_backup"]["start_lsn"],
                incremental["result"]["base_backup"]["start_lsn"],
            )
            changed["database_pages"] = cluster_pages(superuser_dsn)
            print(
                f"rewrote {changed['rows']} rows on ~{changed['pages']} heap pages (every {args.page_stride}th page); "
                f"the WAL summaries count {changed['blocks']} blocks modified "
                f"({100 * changed['blocks'] / changed['database_pages']:.1f} % of the database's {changed['database_pages']} pages)"
            )
            bare_incremental = bare_pg_basebackup(
                conn, workdir / "bare-incremental", incremental_from=workdir / "bare-full" / "backup_manifest"
            )
            chain = [incremental]
            for _ in range(CHAIN_INCREMENTALS - 1):
                change_pages(superuser_dsn, args.page_stride)
                chain.append(take(conn, store, sandbox, policy, "incremental"))
            target_time = ship_wal_to_target(sandbox, store, policy, superuser_dsn)
            full_id = full["result"]["backup_set_id"]
            tip_id = chain[-1]["result"]["backup_set_id"]
            from_full = recover_to(store, sandbox, policy, target_time, workdir, full_id)
            from_chain = recover_to(store, sandbox, policy, target_time, workdir, tip_id)
    finally:
        if args.keep:
            print(f"--keep: the bench sandbox keeps running in {benchlib.bench_state_dir(PG_MAJOR)}")
        else:
            benchlib.stop_bench_sandbox(PG_MAJOR)

    changed["stride"] = args.page_stride
    body = report(db_size, changed, full, incremental, bare_full, bare_incremental, chain, from_full, from_chain)
    print()
    print(body)
    benchlib.write_results(NAME, "Incremental base backups (PostgreSQL 18)", machine, pg_version, body)
    return 0


def report(
    db_size: int,
    changed: dict[str, int],
    full: dict[str, Any],
    incremental: dict[str, Any],
    bare_full: dict[str, Any],
    bare_incremental: dict[str, Any],
    chain: list[dict[str, Any]],
    from_full: dict[str, Any],
    from_chain: dict[str, Any],
) -> str:
    full_stored = full["result"]["sizes"]["stored_bytes"]
    inc_stored = incremental["result"]["sizes"]["stored_bytes"]
    time_ratio = incremental["wall"] / full["wall"]
    size_ratio = inc_stored / full_stored
    rto_ratio = from_chain["wall"] / from_full["wall"]

    def verdict(ratio: float, goal: float) -> str:
        return "met" if ratio <= goal else "NOT met"

    rows = [
        ["database size", fmt_mb(db_size)],
        [
            "changed between the full and the incremental",
            f"{changed['rows']} rows rewritten on ~{changed['pages']} heap pages (every {changed['stride']}th); "
            f"{changed['blocks']} blocks modified per the WAL summaries = "
            f"{100 * changed['blocks'] / changed['database_pages']:.1f} % of the database's {changed['database_pages']} pages",
        ],
        ["engine full: wall / stored", f"{full['wall']:.1f} s / {fmt_mb(full_stored)}"],
        ["engine incremental: wall / stored", f"{incremental['wall']:.1f} s / {fmt_mb(inc_stored)}"],
        ["**incremental / full time** (goal ≤ 0.20)", f"**{time_ratio:.3f}** ({verdict(time_ratio, TIME_GOAL)})"],
        [
            "**incremental / full stored size** (goal ≤ 0.10)",
            f"**{size_ratio:.3f}** ({verdict(size_ratio, SIZE_GOAL)})",
        ],
        [
            "bare pg_basebackup: full / incremental wall",
            f"{bare_full['wall']:.1f} s / {bare_incremental['wall']:.1f} s "
            f"(ratio {bare_incremental['wall'] / bare_full['wall']:.3f})",
        ],
        [
            "bare pg_basebackup: full / incremental size (plain tars)",
            f"{fmt_mb(bare_full['size'])} / {fmt_mb(bare_incremental['size'])} "
            f"(ratio {bare_incremental['size'] / bare_full['size']:.3f})",
        ],
        ["chain incrementals (wall each)", ", ".join(f"{c['wall']:.1f} s" for c in chain)],
        ["PITR from the full alone (RTO)", f"{from_full['wall']:.1f} s {from_full['seconds']}"],
        [f"PITR from full + {len(chain)} incrementals (RTO)", f"{from_chain['wall']:.1f} s {from_chain['seconds']}"],
        ["**chain RTO / full-alone RTO** (goal ≤ 1.3)", f"**{rto_ratio:.2f}** ({verdict(rto_ratio, RTO_GOAL)})"],
    ]
    return (
        "Same cluster, same run. Engine sides are `take_base_backup` (verify, compress, encrypt, upload,\n"
        "read back, publish) and `recover` (the hms_dr_pitr path) against moto S3 on 127.0.0.1.\n\n"
        + markdown_table(["", "figure"], rows)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
