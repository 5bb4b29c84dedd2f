#!/usr/bin/env python3
"""How much slower is the daily logical backup than the runbook's bare `pg_dump -Fc -f file`?

On one ≥ 1 GB HMS database (the bench sandbox in <repo>/.sandbox-bench), alternating rounds of:

- bare:     ``pg_dump -Fc -f <file>`` as hms_backup (default compression, as the runbook does);
- pipeline: what the DAG's tasks do, without Airflow: ``take_logical_backup`` (baselines + dump,
            schema and data exports in one snapshot, pg_dump | zstd | gpg, tapped, into moto S3),
            the read-back of every payload (``verify_stored_payload``) and the manifests
            (``publish_set``);
- tools:    the same tool chain for the whole-database dump only, as a shell pipeline to /dev/null
            (``pg_dump -Fc -Z0 | zstd | gpg``): what the tools cost without Python, S3 or the exports.

Prints medians, the pipeline / bare ratio (the goal: ≤ 1.10, issue 12), MB/s, stored
sizes and where the CPU went; writes bench/results/<date>-daily-backup-vs-pg-dump.md.

    PYTHONPATH=plugins .venv/bin/python bench/daily_backup_vs_pg_dump.py [--scale-mb 1100] [--rounds 2] [--keep]
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import MB, CpuSampler, fmt_mb, markdown_table, median

GOAL = 1.10  # issue 12: the daily backup, content digests included, within 10 % of the bare pg_dump -Fc
NAME = "daily-backup-vs-pg-dump"


class _Capture(logging.Handler):
    """Keeps the engine's log lines of the current run (the baselines' timing is only logged)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def baseline_seconds(self) -> float | None:
        for message in self.messages:
            match = re.match(r"baselines: .* in ([0-9.]+) s$", message)
            if match:
                return float(match.group(1))
        return None


def run_bare(conn: Any, workdir: Path, sampler: CpuSampler) -> dict[str, Any]:
    from hms_dr.database import client_tools
    from hms_dr.pgtools import tool_env

    target = workdir / "bare.pgdump"
    target.unlink(missing_ok=True)
    argv = [client_tools(conn).program("pg_dump"), "-Fc", "-f", str(target), "--no-password"]

    def dump() -> None:
        subprocess.run(argv, env=tool_env(conn), check=True)

    wall, _, cpu = benchlib.measure(dump, sampler)
    size = target.stat().st_size
    target.unlink()
    return {"wall": wall, "size": size, "cpu": cpu}


def run_tools_chain(conn: Any, sandbox: Any, policy: Any, sampler: CpuSampler) -> dict[str, Any]:
    """pg_dump -Fc -Z0 | zstd | gpg --encrypt | wc -c, with the engine's own argv for each tool."""
    from hms_dr.crypto import check_encryption_key, encrypt_stage, gpg_home
    from hms_dr.database import client_tools
    from hms_dr.pgtools import pg_dump_argv, tool_env

    compression = policy.compression
    with gpg_home(policy.staging.dir) as home:
        key = benchlib.encryption_key(sandbox)
        check_encryption_key(home, key)
        # The engine's chain for the whole-database custom archive: gzip happens inside pg_dump (-Z),
        # zstd outside it (pg_dump -Z0 | zstd -q -c -<level> -T<threads>).
        gzip_level = compression.level if compression.method.value == "gzip" else 0
        stages = [pg_dump_argv(client_tools(conn), snapshot=None, archive_format="c", compress_level=gzip_level)]
        if compression.method.value == "zstd":
            stages.append(["zstd", "-q", "-c", f"-{compression.level}", f"-T{compression.threads}"])
        stages.append(list(encrypt_stage(home, key).argv))
        script = " | ".join(shlex.join(s) for s in stages) + " | wc -c"

        def chain() -> int:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", script], env=tool_env(conn), check=True, capture_output=True, text=True
            )
            return int(done.stdout.strip())

        wall, size, cpu = benchlib.measure(chain, sampler)
    return {"wall": wall, "size": size, "cpu": cpu, "script": script}


def run_baselines_alone(conn: Any, policy: Any) -> dict[str, float]:
    """The baselines of take_logical_backup without any dump running: per table count and per view."""
    from hms_dr import baseline
    from hms_dr.database import connect

    timings: dict[str, float] = {}
    with connect(conn, autocommit=False) as connection:
        cursor = connection.cursor()
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        baseline.apply_fingerprint_settings(cursor)
        tables = baseline.list_tables(cursor, policy.logical_backup.schemas)
        views = baseline.resolve_relations(cursor, policy.logical_backup.baseline_views, purpose="baseline view")
        started = time.monotonic()
        for name in tables:
            schema, _, table = name.partition(".")
            baseline.count_rows(cursor, schema, table)
        # Not run by the backup since the content digests count the rows: shown as the read saved.
        timings["count(*) of every table (no longer run: the content digest counts)"] = time.monotonic() - started
        for schema, view in views:
            t0 = time.monotonic()
            baseline.fingerprint_relation(cursor, schema, view)
            timings[f"fingerprint of {schema}.{view}"] = time.monotonic() - t0
        connection.rollback()
    return timings


def run_pipeline(
    conn: Any, sandbox: Any, policy: Any, store: Any, capture: _Capture, sampler: CpuSampler
) -> dict[str, Any]:
    from hms_dr.manifest import BackupKind

    capture.messages.clear()
    out: dict[str, Any] = {}

    def whole() -> None:
        out.update(benchlib.take_daily_set(conn, sandbox, policy, store))

    wall, _, cpu = benchlib.measure(whole, sampler)
    result = out["result"]
    phases = {k: out[k] for k in ("dump_step", "readback", "publish")}
    dumps = {d["kind"]: d for d in result["dumps"]}
    logical_dump = dumps[BackupKind.LOGICAL.value]
    # Leave moto empty for the next round (not timed).
    for stored in store.list(""):
        store.delete(stored.key)

    def total(d: dict[str, Any], field: str) -> int:
        """A dump's bytes over its payloads (one, or one per file of a directory-format dump)."""
        return sum(int(p["payload"][field] or 0) for p in d["payloads"])

    return {
        "wall": wall,
        "cpu": cpu,
        **phases,
        "baselines": capture.baseline_seconds(),
        "per_dump": {
            kind: {
                "seconds": d["seconds"],
                "stored": total(d, "size_bytes"),
                "plain": total(d, "plain_size_bytes"),
                "verification": d["verification"].get("check"),
            }
            for kind, d in dumps.items()
        },
        "readback_per_payload": {r["key"].rsplit("/", 1)[-1]: r["seconds"] for r in out["readback_records"]},
        "stored_total": sum(total(d, "size_bytes") for d in result["dumps"]),
        "plain_total": sum(total(d, "plain_size_bytes") for d in result["dumps"]),
        "stored_logical": total(logical_dump, "size_bytes"),
        "plain_logical": total(logical_dump, "plain_size_bytes"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-mb", type=float, default=1100, help="HMS data generator scale (default 1100: ≥ 1 GB)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds of bare / pipeline / tools (default 2)"
    )
    parser.add_argument("--no-tools-chain", action="store_true", help="skip the shell pg_dump | zstd | gpg side")
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox running")
    parser.add_argument("--verbose", action="store_true", help="print the engine's INFO log lines")
    args = parser.parse_args()

    benchlib.configure_logging(args.verbose)
    capture = _Capture()
    logging.getLogger("hms_dr").addHandler(capture)

    from hms_dr.policy import load_policy

    sandbox = benchlib.start_bench_sandbox(args.scale_mb)
    try:
        conn = benchlib.backup_connection(sandbox)
        policy = load_policy(sandbox.paths.policy_file)
        store = benchlib.empty_primary_store(sandbox, policy)
        db_size = benchlib.database_size(conn)
        pg_version = benchlib.server_version(conn)
        machine = benchlib.machine_info()
        print(f"database {sandbox.database}: pg_database_size = {fmt_mb(db_size)} ({db_size / 2**30:.2f} GiB)")
        if db_size < 10**9:
            print(
                f"WARNING: the database is under 1 GB; a sandbox loaded earlier at a smaller scale is reused (remove {benchlib.BENCH_STATE_DIR} to reload)"
            )
        busy = benchlib.busy_other_processes()
        if busy:
            print("WARNING: other processes are busy on this shared machine: " + "; ".join(busy))
        sampler_args = {"moto_pid": sandbox.s3_server().pid(), "postmaster_pid": sandbox.cluster().postmaster_pid()}
        print(
            f"policy: compression {policy.compression.method.value} level {policy.compression.level} threads {policy.compression.threads}, "
            f"data-only tables {', '.join(policy.logical_backup.data_only_tables)}, part size {policy.store.part_size_mib} MiB, "
            f"verify_readback {policy.store.verify_readback}"
        )

        bare_runs: list[dict[str, Any]] = []
        pipe_runs: list[dict[str, Any]] = []
        tool_runs: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="bench-", dir=benchlib.BENCH_STATE_DIR) as tmp:
            workdir = Path(tmp)
            for round_no in range(1, args.rounds + 1):
                bare = run_bare(conn, workdir, CpuSampler(**sampler_args))
                bare_runs.append(bare)
                print(
                    f"round {round_no}: bare pg_dump -Fc      {bare['wall']:7.1f} s  {fmt_mb(bare['size'])}", flush=True
                )
                pipe = run_pipeline(conn, sandbox, policy, store, capture, CpuSampler(**sampler_args))
                pipe_runs.append(pipe)
                print(
                    f"round {round_no}: pipeline             {pipe['wall']:7.1f} s  (dump step {pipe['dump_step']:.1f} s, "
                    f"read-back {pipe['readback']:.1f} s, publish {pipe['publish']:.2f} s)  {fmt_mb(pipe['stored_total'])} stored",
                    flush=True,
                )
                if not args.no_tools_chain:
                    tools = run_tools_chain(conn, sandbox, policy, CpuSampler(**sampler_args))
                    tool_runs.append(tools)
                    print(
                        f"round {round_no}: tools chain (shell)  {tools['wall']:7.1f} s  {fmt_mb(tools['size'])}",
                        flush=True,
                    )
            baselines_alone = run_baselines_alone(conn, policy)
            print(
                "baselines alone (no dump running): " + ", ".join(f"{k} {v:.1f} s" for k, v in baselines_alone.items()),
                flush=True,
            )
    finally:
        if args.keep:
            print(f"--keep: the bench sandbox keeps running in {benchlib.BENCH_STATE_DIR}")
        else:
            benchlib.stop_bench_sandbox()

    body = report(db_size, policy, bare_runs, pipe_runs, tool_runs, args)
    body += (
        "\nBaselines measured alone afterwards (same queries, no dump running): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in baselines_alone.items())
        + f"; inside the pipeline, concurrent with the dumps, they took {median([r['baselines'] or 0 for r in pipe_runs]):.1f} s (median).\n"
    )
    print()
    print(body)
    benchlib.write_results(
        NAME, "Daily logical backup vs bare pg_dump", machine, pg_version, body + benchlib.busy_section(busy)
    )
    return 0


def report(
    db_size: int,
    policy: Any,
    bare_runs: list[dict[str, Any]],
    pipe_runs: list[dict[str, Any]],
    tool_runs: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    bare_wall = median([r["wall"] for r in bare_runs])
    pipe_wall = median([r["wall"] for r in pipe_runs])
    dump_step = median([r["dump_step"] for r in pipe_runs])
    readback = median([r["readback"] for r in pipe_runs])
    publish = median([r["publish"] for r in pipe_runs])
    ratio = pipe_wall / bare_wall
    bare_size = median([r["size"] for r in bare_runs])
    stored_logical = median([r["stored_logical"] for r in pipe_runs])
    stored_total = median([r["stored_total"] for r in pipe_runs])
    plain_logical = median([r["plain_logical"] for r in pipe_runs])
    plain_total = median([r["plain_total"] for r in pipe_runs])
    verdict = "meets" if ratio <= GOAL else "MISSES"

    lines = [
        f"Command: `{' '.join(['bench/daily_backup_vs_pg_dump.py', *sys.argv[1:]])}`; {args.rounds} alternating round(s), medians below.",
        f"Policy: compression {policy.compression.method.value} -{policy.compression.level} -T{policy.compression.threads}, "
        f"gpg public key (AES256, no gpg compression), data-only tables {', '.join(policy.logical_backup.data_only_tables)}, "
        f"read-back on, store moto S3 (part size {policy.store.part_size_mib} MiB).",
        "",
        "## Result",
        "",
        markdown_table(
            ["figure", "value"],
            [
                ["database size (pg_database_size)", f"{fmt_mb(db_size)}"],
                ["bare `pg_dump -Fc -f file` wall", f"{bare_wall:.1f} s"],
                ["pipeline wall (dump step + read-back + publish)", f"{pipe_wall:.1f} s"],
                ["**ratio pipeline / bare**", f"**{ratio:.2f}** ({verdict} ≤ {GOAL})"],
                ["ratio dump step alone / bare", f"{dump_step / bare_wall:.2f}"],
                ["dump step (baselines + 3 dumps, take_logical_backup)", f"{dump_step:.1f} s"],
                ["read-back (verify_stored_payload × {})".format(len(pipe_runs[0]["per_dump"])), f"{readback:.1f} s"],
                ["publication (publish_set × {})".format(len(pipe_runs[0]["per_dump"])), f"{publish:.2f} s"],
                ["bare: database MB/s", f"{db_size / MB / bare_wall:.1f} MB/s"],
                ["pipeline: database MB/s", f"{db_size / MB / pipe_wall:.1f} MB/s"],
                [
                    "pipeline: whole-db plain archive bytes / pipeline wall",
                    f"{plain_logical / MB / pipe_wall:.1f} MB/s",
                ],
                ["pipeline: all plain dump bytes / dump step", f"{plain_total / MB / dump_step:.1f} MB/s"],
                ["bare output (-Fc, gzip -Z6 inside)", fmt_mb(bare_size)],
                [
                    "pipeline whole-db payload (zstd + gpg)",
                    f"{fmt_mb(stored_logical)} (plain archive {fmt_mb(plain_logical)})",
                ],
                ["pipeline all payloads stored", f"{fmt_mb(stored_total)} (plain {fmt_mb(plain_total)})"],
            ],
        ),
    ]
    if tool_runs:
        tools_wall = median([r["wall"] for r in tool_runs])
        lines += [
            "",
            f"Tools chain alone (whole-db dump only, shell, to /dev/null): {tools_wall:.1f} s, {fmt_mb(median([r['size'] for r in tool_runs]))}, "
            f"{db_size / MB / tools_wall:.1f} MB/s database; ratio to bare {tools_wall / bare_wall:.2f}; "
            f"pipeline / tools chain {pipe_wall / tools_wall:.2f}.",
            "",
            f"`{tool_runs[0]['script'].replace(str(benchlib.REPO), '<repo>')}`",
        ]
    lines += ["", "## Every run", ""]
    rows = []
    for i, r in enumerate(bare_runs, 1):
        rows.append([i, "bare", f"{r['wall']:.1f}", "", "", "", fmt_mb(r["size"]), *benchlib.cpu_cells(r)])
    for i, r in enumerate(pipe_runs, 1):
        per = "; ".join(f"{k} {v['seconds']:.1f} s" for k, v in r["per_dump"].items())
        base = f"{r['baselines']:.1f} s" if r["baselines"] is not None else "?"
        rows.append(
            [
                i,
                "pipeline",
                f"{r['wall']:.1f}",
                f"{r['dump_step']:.1f} ({per}; baselines {base}, concurrent)",
                f"{r['readback']:.1f}",
                f"{r['publish']:.2f}",
                fmt_mb(r["stored_total"]),
                *benchlib.cpu_cells(r),
            ]
        )
    for i, r in enumerate(tool_runs, 1):
        rows.append([i, "tools chain", f"{r['wall']:.1f}", "", "", "", fmt_mb(r["size"]), *benchlib.cpu_cells(r)])
    lines.append(
        markdown_table(
            [
                "round",
                "side",
                "wall s",
                "dump step s",
                "read-back s",
                "publish s",
                "output",
                "our CPU s",
                "CPU s of other work",
            ],
            rows,
        )
    )

    lines += ["", "Per payload (last round):", ""]
    last = pipe_runs[-1]
    lines.append(
        markdown_table(
            ["kind", "dump s", "plain", "stored", "ratio", "verification", "read-back s"],
            [
                [
                    k,
                    f"{v['seconds']:.1f}",
                    fmt_mb(v["plain"]),
                    fmt_mb(v["stored"]),
                    f"{v['plain'] / max(v['stored'], 1):.2f}",
                    v["verification"],
                    next(
                        (
                            f"{s:.1f}"
                            for n, s in last["readback_per_payload"].items()
                            if n.split(".")[0] == {"logical": "dump"}.get(k, k)
                        ),
                        "",
                    ),
                ]
                for k, v in last["per_dump"].items()
            ],
        )
    )
    lines += [
        "",
        "## Where the CPU went (last round; 2 cores = 2.0 CPU-s per wall second)",
        "",
        "Bare pg_dump:",
        "",
        benchlib.cpu_table(bare_runs[-1]["cpu"], bare_runs[-1]["wall"]),
        "",
        "Pipeline:",
        "",
        benchlib.cpu_table(pipe_runs[-1]["cpu"], pipe_runs[-1]["wall"]),
    ]
    if tool_runs:
        lines += ["", "Tools chain:", "", benchlib.cpu_table(tool_runs[-1]["cpu"], tool_runs[-1]["wall"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
