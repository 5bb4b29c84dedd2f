#!/usr/bin/env python3
"""How much slower is the monthly restore test than a bare `pg_restore -j2` of the same dump?

On one ≥ 1 GB HMS database (the bench sandbox in <repo>/.sandbox-bench), one logical backup set is
taken into the sandbox's S3 (not timed), its whole-database dump is fetched once and kept as a
local plain archive (not timed), then alternating rounds of:

- bare:         ``createdb -T template0 -E UTF8`` + ``pg_restore -j2 --exit-on-error --no-owner
                --no-privileges -d <db> <local file>`` on the isolated restore-target server;
- restore test: what hms_restore_test's tasks do, without Airflow, timed as the DAG measures RTO
                (fetch start to end of the checks): ``find_set``, ``restore.fetch_for_restore``
                (download + sha256 proof + gpg | zstd -d + plain sha256), ``create_scratch_database``,
                ``restore_taking_digests(jobs=2)`` (pg_restore with each table's content digest
                taken as its rows are in), removal of the decrypted dump, and
                ``quality.check_restored_database`` (the GX checks, report into a temp dir).

The quality check runs in a fresh Python process each round, as each Airflow task does, so every
round pays the Great Expectations import; the DQ step is the time check_restored_database takes
inside that process (the interpreter's start-up is reported apart and not counted).

Prints medians, the restore test / bare ratio (goal ≤ 1.3), each step, the DQ step's share and
the GX import; writes bench/results/<date>-restore-test-vs-pg-restore.md. Exits 1 when a GX
check fails on the restored database (that would be a bug).

    PYTHONPATH=plugins .venv/bin/python bench/restore_test_vs_pg_restore.py [--scale-mb 1100] [--rounds 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import MB, CpuSampler, fmt_mb, markdown_table, median

GOAL = 1.3
NAME = "restore-test-vs-pg-restore"
JOBS = 2
DQ_CHILD_FLAG = "--dq-child"
DQ_RESULT_MARK = "DQ-RESULT "
# --keep-scratch: what it takes to re-run the quality check on the last round's restored database.
KEPT_SCRATCH_FILE = benchlib.BENCH_STATE_DIR / "kept-scratch.json"

# The sampler's labels are written for the backup; these say what the same threads do in a restore.
CPU_LABELS = {
    "python main thread (reads gpg output, sha256, S3 put; read-back GET + sha256)": "python main thread (S3 GET + sha256, decrypted output to file, plain sha256, psycopg)",
    "python tap thread (pipe copy, sha256 of plain bytes, feed pg_restore)": "python pump thread (feeds the encrypted file to gpg)",
    "python other threads (stderr drains, pg_restore reader)": "python other threads (stderr drains)",
    "postgres background processes (bench cluster)": "postgres of the restore target (restore backends, GX queries, background)",
}
DQ_CHILD_LABEL = "python DQ process (survey, Great Expectations, report)"


# -- the quality check, in a fresh process ---------------------------------------------------------


def dq_child() -> int:
    """Child mode: read the request as JSON on stdin, run check_restored_database as the task
    does, print the timings and the summary as one DQ-RESULT line."""
    request = json.load(sys.stdin)
    records: list[tuple[float, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append((record.created, record.getMessage()))

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    engine_log = logging.getLogger("hms_dr")
    engine_log.setLevel(logging.INFO)
    engine_log.addHandler(Keep(level=logging.INFO))

    import hms_dr.quality as quality  # the task imports it before its clock starts
    from hms_dr.logical.content import DigestTaken
    from hms_dr.policy import DEFAULT_POLICY_PATH, load_policy

    spent: dict[str, float] = {}
    starts: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            starts.setdefault(name, time.time())
            t0 = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.monotonic() - t0

        return wrapper

    # check_restored_database looks these up in its module: wrapping them there times each part.
    for name in (
        "_connect",
        "survey_database",
        "plan_checks",
        "import_great_expectations",
        "run_plan",
        "judge",
        "write_summary",
        "write_report_html",
    ):
        setattr(quality, name, timed(name, getattr(quality, name)))

    started = time.monotonic()
    summary = quality.check_restored_database(
        request["dsn"],
        request["baselines"],
        report_dir=Path(request["report_dir"]),
        backup_set_id=request["backup_set_id"],
        smoke_queries=load_policy(
            DEFAULT_POLICY_PATH
        ).restore_test.smoke_queries,  # the runbook's, as the task runs them
        content_taken=DigestTaken.from_json(request["content"]) if request.get("content") else None,
    )
    seconds = time.monotonic() - started

    gx_version, gx_import, validate, docs, expectations, suites = "?", None, None, None, None, None
    measured, measure_wait = None, None
    for _created, message in records:
        if match := re.match(r"great_expectations (\S+) imported in ([0-9.]+) s", message):
            gx_version, gx_import = match.group(1), float(match.group(2))
        elif match := re.match(
            r"\d+ of \d+ checks' rows measured ahead of Great Expectations in ([0-9.]+) s"
            r" \(waited ([0-9.]+) s",
            message,
        ):
            measured, measure_wait = float(match.group(1)), float(match.group(2))
        elif match := re.match(r"(\d+) expectations in (\d+) suites validated in ([0-9.]+) s", message):
            expectations, suites, validate = int(match.group(1)), int(match.group(2)), float(match.group(3))
        elif match := re.match(r"Data Docs built in ([0-9.]+) s", message):
            docs = float(match.group(1))
    out = {
        "seconds": seconds,
        "parts": spent,
        "gx_version": gx_version,
        "gx_import": gx_import,
        "gx_validate": validate,
        "gx_docs": docs,
        "measured": measured,
        "measure_wait": measure_wait,
        "expectations": expectations,
        "suites": suites,
        "passed": summary["passed"],
        "checks": len(summary["checks"]),
        "check_kinds": {
            kind: sum(1 for c in summary["checks"] if c["check"] == kind)
            for kind in dict.fromkeys(c["check"] for c in summary["checks"])
        },
        "failed": summary["failed"],
    }
    print(DQ_RESULT_MARK + json.dumps(out), flush=True)
    return 0


def run_dq_in_child(
    dsn: str, baselines: Any, report_dir: Path, backup_set_id: str, content: dict[str, Any] | None
) -> dict[str, Any]:
    request = json.dumps(
        {
            "dsn": dsn,
            "baselines": baselines,
            "report_dir": str(report_dir),
            "backup_set_id": backup_set_id,
            "content": content,
        }
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), DQ_CHILD_FLAG], input=request, capture_output=True, text=True
    )
    process_wall = time.monotonic() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith(DQ_RESULT_MARK)), None)
    if done.returncode != 0 or line is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"the quality check process failed (exit {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(line[len(DQ_RESULT_MARK) :])
    result["process_wall"] = process_wall
    result["stderr"] = [x for x in done.stderr.splitlines() if x.strip()]
    return result


# -- the two sides ---------------------------------------------------------------------------------


def run_restore_test(
    policy: Any,
    store: Any,
    key: Any,
    admin: Any,
    backup_set_id: str,
    sampler: CpuSampler,
    keep_scratch: bool = False,
    digests_as_restored: bool = True,
) -> dict[str, Any]:
    """The tasks restore_into_scratch + check_against_baselines, back to back (no Airflow).
    keep_scratch: leave the scratch database (not timed either way) for measuring the checks
    alone, and write its DSN and baselines to KEPT_SCRATCH_FILE. digests_as_restored False: the
    design before, pg_restore alone and every content digest taken by the checks after it."""
    from hms_dr import restore
    from hms_dr.catalog import find_set
    from hms_dr.manifest import BackupKind
    from hms_dr.restore_test.logical import restore_taking_digests
    from hms_dr.scratch.database import (
        ScratchDatabaseKind,
        create_scratch_database,
        drop_scratch_database,
        scratch_database_name,
    )
    from hms_dr.scratch.workdir import WorkPurpose, work_folder

    scratch = scratch_database_name(ScratchDatabaseKind.RESTORE_TEST, backup_set_id)
    workdir = work_folder(policy.staging.dir, WorkPurpose.RESTORE_TEST, scratch)  # the task's own work directory
    report_dir = workdir / "report"
    steps: dict[str, float] = {}
    out: dict[str, Any] = {}

    def restore_test() -> None:
        t0 = time.monotonic()
        backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, backup_set_id)
        t1 = time.monotonic()
        try:
            fetched = restore.fetch_for_restore(store, backup_set, key, workdir)
            t2 = time.monotonic()
            create_scratch_database(admin, scratch)
            t3 = time.monotonic()
            if digests_as_restored:
                restored, content, digest_after = restore_taking_digests(
                    admin.with_database(scratch),
                    fetched.path,
                    backup_set.manifest.baselines,
                    jobs=JOBS,
                    expected_bytes=None,
                )
            else:
                restored = restore.run_pg_restore(admin.with_database(scratch), fetched.path, jobs=JOBS)
                content, digest_after = None, 0.0
            t4 = time.monotonic()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # the decrypted dump never outlives the task
        t5 = time.monotonic()
        dq = run_dq_in_child(
            admin.with_database(scratch).libpq_dsn(),
            backup_set.manifest.baselines,
            report_dir,
            backup_set_id,
            content.to_json() if content is not None else None,
        )
        steps.update(
            catalog=t1 - t0,
            download=fetched.download_seconds,
            decrypt=fetched.decrypt_seconds,
            fetch_rest=(t2 - t1) - fetched.download_seconds - fetched.decrypt_seconds,
            fetch=t2 - t1,
            createdb=t3 - t2,
            pg_restore=restored["seconds"],
            digest_after=digest_after,
            cleanup=t5 - t4,
            dq=dq["seconds"],
            dq_startup=dq["process_wall"] - dq["seconds"],
        )
        out.update(fetched=fetched, dq=dq, baselines=backup_set.manifest.baselines)

    try:
        measured, _, cpu = benchlib.measure(restore_test, sampler)
        restored_size = benchlib.database_size(admin.with_database(scratch))
        if keep_scratch:
            KEPT_SCRATCH_FILE.touch(mode=0o600)  # the DSN holds the restore target's password
            KEPT_SCRATCH_FILE.write_text(
                json.dumps(
                    {
                        "dsn": admin.with_database(scratch).libpq_dsn(),
                        "baselines": out["baselines"],
                        "backup_set_id": backup_set_id,
                    }
                )
            )
            print(f"--keep-scratch: scratch database {scratch} kept; DSN and baselines in {KEPT_SCRATCH_FILE}")
    finally:
        if not keep_scratch:
            drop_scratch_database(admin, scratch)  # not timed, as the teardown task
        shutil.rmtree(workdir, ignore_errors=True)
    # The DAG's clock runs inside the task processes: the DQ process's interpreter start-up is not in it.
    wall = measured - steps["dq_startup"]
    fetched = out["fetched"]
    return {
        "wall": wall,
        "measured": measured,
        **steps,
        "dq_result": out["dq"],
        "stored": fetched.stored_size_bytes,
        "plain": fetched.plain_size_bytes,
        "restored_size": restored_size,
        "cpu": cpu,
    }


def cpu_of(run: dict[str, Any]) -> dict[str, float]:
    labels = dict(CPU_LABELS)
    for name in {"python", "python3", Path(sys.executable).name, Path(os.path.realpath(sys.executable)).name}:
        labels[name] = DQ_CHILD_LABEL
    return benchlib.relabel_cpu(run["cpu"], labels)


# -- main ------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-mb", type=float, default=1100, help="HMS data generator scale (default 1100: ≥ 1 GB)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of bare / restore test (default 2)")
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox running")
    parser.add_argument(
        "--keep-scratch",
        action="store_true",
        help=f"keep the last round's scratch database (implies --keep); its DSN and baselines go to {KEPT_SCRATCH_FILE}",
    )
    parser.add_argument(
        "--digests-after-restore",
        action="store_true",
        help="also run, each round, the restore test as it was before the content digests were taken during"
        " pg_restore (the checks take them all after it), and report both",
    )
    parser.add_argument(
        "--split-cores",
        action="store_true",
        help="the production layout on one machine: the restore-target server on CPU 1, everything else"
        " (this bench, the tools it runs, the quality check, the primary, moto) on CPU 0; both sides alike",
    )
    parser.add_argument("--verbose", action="store_true", help="print the engine's INFO log lines")
    args = parser.parse_args()
    args.keep = args.keep or args.keep_scratch
    if args.split_cores:
        if len(os.sched_getaffinity(0)) < 2:
            parser.error("--split-cores needs two CPUs")
        os.sched_setaffinity(0, {0})  # inherited by the sandbox's servers and every tool started from here

    benchlib.configure_logging(args.verbose)

    from hms_dr import logical
    from hms_dr.database import client_tools
    from hms_dr.policy import load_policy

    sandbox = benchlib.start_bench_sandbox(args.scale_mb)
    store = None
    try:
        conn = benchlib.backup_connection(sandbox)
        admin = benchlib.restore_target_admin(sandbox)
        policy = load_policy(sandbox.paths.policy_file)
        store = benchlib.empty_primary_store(sandbox, policy)
        benchlib.clean_restore_target(admin)
        db_size = benchlib.database_size(conn)
        pg_version = benchlib.server_version(admin)
        machine = benchlib.machine_info()
        machine["pg_restore"] = benchlib._first_line([client_tools(admin).program("pg_restore"), "--version"])
        print(
            f"database {sandbox.database}: pg_database_size = {fmt_mb(db_size)} ({db_size / 2**30:.2f} GiB); "
            f"restore target 127.0.0.1:{sandbox.restore_target_port}"
        )
        if db_size < 10**9:
            print(
                f"WARNING: the database is under 1 GB; a sandbox loaded earlier at a smaller scale is reused (remove {benchlib.BENCH_STATE_DIR} to reload)"
            )
        busy = benchlib.busy_other_processes()
        if busy:
            print("WARNING: other processes are busy on this shared machine: " + "; ".join(busy))
        sampler_args = {
            "moto_pid": sandbox.s3_server().pid(),
            "postmaster_pid": benchlib.restore_target_postmaster_pid(sandbox),
        }
        if args.split_cores:
            pinned = pin_process_tree(sampler_args["postmaster_pid"], {1})
            print(f"--split-cores: the restore-target server ({pinned} processes) on CPU 1, the rest on CPU 0")

        print("taking one logical backup set into the sandbox's S3 (not timed)...", flush=True)
        t0 = time.monotonic()
        result = logical.take_logical_backup(
            conn,
            store,
            benchlib.encryption_key(sandbox),
            cluster=policy.cluster.name,
            logical_backup=policy.logical_backup,
            compression=policy.compression,
            staging=policy.staging,
        )
        logical.publish_logical_sets(store, result, {"dag_id": "bench", "run_id": "bench"})
        backup_set_id = result.backup_set_id
        print(f"set {backup_set_id} published in {time.monotonic() - t0:.1f} s", flush=True)
        key = benchlib.decryption_key(sandbox)

        bare_runs: list[dict[str, Any]] = []
        test_runs: list[dict[str, Any]] = []
        before_runs: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="bench-", dir=benchlib.BENCH_STATE_DIR) as tmp:
            kept = benchlib.fetch_kept_dump(store, policy, key, backup_set_id, Path(tmp))
            print(
                f"kept the decrypted plain archive for the bare side: {fmt_mb(kept.plain_size_bytes)} "
                f"(stored {fmt_mb(kept.stored_size_bytes)})",
                flush=True,
            )
            for round_no in range(1, args.rounds + 1):
                bare = benchlib.bare_pg_restore(admin, kept.path, JOBS, CpuSampler(**sampler_args))
                bare_runs.append(bare)
                print(
                    f"round {round_no}: bare createdb + pg_restore -j{JOBS}  {bare['wall']:7.1f} s  "
                    f"(pg_restore {bare['pg_restore']:.1f} s)",
                    flush=True,
                )
                test = run_restore_test(
                    policy,
                    store,
                    key,
                    admin,
                    backup_set_id,
                    CpuSampler(**sampler_args),
                    keep_scratch=args.keep_scratch and round_no == args.rounds,
                )
                test_runs.append(test)
                dq = test["dq_result"]
                print(
                    f"round {round_no}: restore test                 {test['wall']:7.1f} s  (fetch {test['fetch']:.1f} s, "
                    f"createdb {test['createdb']:.2f} s, pg_restore {test['pg_restore']:.1f} s, DQ {test['dq']:.1f} s "
                    f"[GX import {dq['gx_import'] or 0:.1f} s]; {dq['checks']} checks, "
                    f"{'all PASS' if dq['passed'] else str(len(dq['failed'])) + ' FAILED'})",
                    flush=True,
                )
                for message in dq["failed"]:
                    print(f"  FAILED check: {message}")
                if args.digests_after_restore:
                    before = run_restore_test(
                        policy, store, key, admin, backup_set_id, CpuSampler(**sampler_args), digests_as_restored=False
                    )
                    before_runs.append(before)
                    print(
                        f"round {round_no}: restore test, digests after  {before['wall']:7.1f} s  (pg_restore "
                        f"{before['pg_restore']:.1f} s, DQ {before['dq']:.1f} s; "
                        f"{'all PASS' if before['dq_result']['passed'] else 'FAILED'})",
                        flush=True,
                    )
    finally:
        if store is not None:
            for stored in store.list(""):  # leave moto empty (not timed)
                store.delete(stored.key)
        if args.keep:
            print(f"--keep: the bench sandbox keeps running in {benchlib.BENCH_STATE_DIR}")
        else:
            benchlib.stop_bench_sandbox()

    body = report(db_size, policy, bare_runs, test_runs, args, before_runs)
    print()
    print(body)
    benchlib.write_results(
        NAME,
        "Restore test vs bare pg_restore -j2",
        machine,
        pg_version,
        body + ("\n## Other busy processes at start\n\n" + "\n".join(f"- {b}" for b in busy) + "\n" if busy else ""),
    )
    return 0 if all(r["dq_result"]["passed"] for r in [*test_runs, *before_runs]) else 1


def pin_process_tree(pid: int | None, cpus: set[int]) -> int:
    """Pin ``pid`` and every process under it to ``cpus`` (the backends it forks later inherit it)."""
    import psutil

    if pid is None:
        raise RuntimeError("--split-cores: the restore-target server's postmaster was not found")
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        process.cpu_affinity(sorted(cpus))
    return len(processes)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


def report(
    db_size: int,
    policy: Any,
    bare_runs: list[dict[str, Any]],
    test_runs: list[dict[str, Any]],
    args: argparse.Namespace,
    before_runs: list[dict[str, Any]],
) -> str:
    def med(runs: list[dict[str, Any]], k: str) -> float:
        return median([r[k] for r in runs])

    def med_dq(k: str) -> float:
        return median([r["dq_result"][k] or 0.0 for r in test_runs])

    def med_part(k: str) -> float:
        return median([r["dq_result"]["parts"].get(k, 0.0) for r in test_runs])

    bare_wall = med(bare_runs, "wall")
    test_wall = med(test_runs, "wall")
    ratio = test_wall / bare_wall
    dq = med(test_runs, "dq")
    gx_import = med_dq("gx_import")
    validate = med_dq("gx_validate")
    docs = med_dq("gx_docs")
    run_plan = med_part("run_plan")
    measured = med_dq("measured")
    measure_wait = med_dq("measure_wait")
    survey = med_part("_connect") + med_part("survey_database")
    report_files = med_part("judge") + med_part("write_summary") + med_part("write_report_html")
    last_dq = test_runs[-1]["dq_result"]
    passed = all(r["dq_result"]["passed"] for r in test_runs)
    stored = med(test_runs, "stored")
    plain = med(test_runs, "plain")
    verdict = "meets" if ratio <= GOAL else "MISSES"
    ratio_no_dq = (test_wall - dq) / bare_wall

    def step(label: str, seconds: float) -> list[str]:
        return [label, f"{seconds:.2f} s", _pct(seconds, test_wall)]

    lines = [
        f"Command: `{' '.join(['bench/restore_test_vs_pg_restore.py', *sys.argv[1:]])}`; {args.rounds} alternating round(s), medians below.",
        f"One logical set taken with the policy (compression {policy.compression.method.value} -{policy.compression.level}, gpg public key), "
        f"stored in moto S3; restored with pg_restore -j{JOBS} into the sandbox's isolated restore-target cluster "
        "(its own PostgreSQL 15, same machine). The restore-test wall is the DAG's RTO clock without Airflow: fetch start to "
        "the end of the checks; the gaps between Airflow tasks and the DQ process's interpreter start-up are not in it.",
        "",
        "## Result",
        "",
        markdown_table(
            ["figure", "value"],
            [
                ["database size (pg_database_size, production)", fmt_mb(db_size)],
                ["restored database size (pg_database_size, median)", fmt_mb(med(test_runs, "restored_size"))],
                ["stored payload (zstd + gpg) / decrypted plain archive", f"{fmt_mb(stored)} / {fmt_mb(plain)}"],
                [f"bare `createdb` + `pg_restore -j{JOBS}` of the local plain archive, wall", f"{bare_wall:.1f} s"],
                ["restore test wall (fetch → end of the GX checks)", f"{test_wall:.1f} s"],
                ["**ratio restore test / bare**", f"**{ratio:.2f}** ({verdict} ≤ {GOAL})"],
                ["ratio without the DQ step", f"{ratio_no_dq:.2f}"],
                ["**DQ step's share of the restore test**", f"**{_pct(dq, test_wall)}** ({dq:.1f} s)"],
                [
                    "GX import (inside the DQ step, fresh process as in a task)",
                    f"{gx_import:.1f} s ({_pct(gx_import, test_wall)} of the restore test, {_pct(gx_import, dq)} of DQ)",
                ],
                [
                    "GX checks on the restored database",
                    f"{last_dq['checks']} checks ("
                    + ", ".join(f"{n} {kind}" for kind, n in last_dq["check_kinds"].items())
                    + f"; {last_dq['expectations']} GX expectations in {last_dq['suites']} suites): "
                    + ("**all PASS** in every round" if passed else "**FAILED**: " + "; ".join(last_dq["failed"][:5])),
                ],
                ["Great Expectations version", last_dq["gx_version"]],
                *(
                    [
                        [
                            "restore test with every content digest taken after pg_restore (the design before), wall",
                            f"{med(before_runs, 'wall'):.1f} s (ratio {med(before_runs, 'wall') / bare_wall:.2f}; "
                            f"pg_restore {med(before_runs, 'pg_restore'):.1f} s, DQ {med(before_runs, 'dq'):.1f} s)",
                        ]
                    ]
                    if before_runs
                    else []
                ),
                *(
                    [["layout", "--split-cores: the restore-target server on CPU 1, everything else on CPU 0"]]
                    if args.split_cores
                    else []
                ),
            ],
        ),
        "",
        "## Restore-test steps (medians)",
        "",
        markdown_table(
            ["step", "time", "share of restore test"],
            [
                step("catalog lookup (find_set: manifest GET)", med(test_runs, "catalog")),
                step("fetch_for_restore, whole", med(test_runs, "fetch")),
                step("  download + sha256 proof (S3 GET to file)", med(test_runs, "download")),
                step("  decrypt (gpg -d | zstd -d to file)", med(test_runs, "decrypt")),
                step("  plain sha256 re-read of the decrypted file, rest", med(test_runs, "fetch_rest")),
                step("create_scratch_database", med(test_runs, "createdb")),
                step(f"run_pg_restore -j{JOBS} (the content digests taken meanwhile)", med(test_runs, "pg_restore")),
                step("  content digests left after pg_restore ended", med(test_runs, "digest_after")),
                step("remove the decrypted dump", med(test_runs, "cleanup")),
                step("**DQ step: check_restored_database**", dq),
                step("  connect + survey of the restored database", survey),
                step("  plan of the checks", med_part("plan_checks")),
                step("  GX import (the costly checks' rows are measured meanwhile)", gx_import),
                step("  measuring those rows, from the start of the import (overlaps it)", measured),
                step("  waiting for the measurements after the import", measure_wait),
                step("  GX context, data source, suites (run_plan rest)", run_plan - measure_wait - validate - docs),
                step("  GX checkpoint run (validation)", validate),
                step("  GX Data Docs build", docs),
                step("  judge + summary.json + report.html", report_files),
            ],
        ),
        "",
        f"pg_restore -j{JOBS} inside the restore test vs bare: {med(test_runs, 'pg_restore'):.1f} s vs {med(bare_runs, 'pg_restore'):.1f} s "
        f"(ratio {med(test_runs, 'pg_restore') / med(bare_runs, 'pg_restore'):.2f}). "
        f"Bare createdb: {med(bare_runs, 'createdb'):.2f} s. "
        f"DQ process start-up (interpreter + hms_dr import, outside the DAG's clock, not counted): {med(test_runs, 'dq_startup'):.1f} s. "
        f"Download {plain / MB / max(med(test_runs, 'fetch'), 1e-9):.0f} MB/s of plain archive through the whole fetch; "
        f"bare restore {db_size / MB / bare_wall:.1f} MB/s of production database.",
        "",
        "## Every run",
        "",
    ]
    rows = []
    for i, r in enumerate(bare_runs, 1):
        rows.append(
            [
                i,
                "bare",
                f"{r['wall']:.1f}",
                "",
                f"{r['createdb']:.2f}",
                f"{r['pg_restore']:.1f}",
                "",
                "",
                "",
                f"{benchlib.own_cpu(r['cpu']):.0f}",
                f"{r['cpu'].get(benchlib.OTHER_LABEL, 0.0):.0f}",
            ]
        )
    for i, r in enumerate(test_runs, 1):
        d = r["dq_result"]
        rows.append(
            [
                i,
                "restore test",
                f"{r['wall']:.1f}",
                f"{r['fetch']:.1f} (download {r['download']:.1f}, decrypt {r['decrypt']:.1f}, rest {r['fetch_rest']:.1f})",
                f"{r['createdb']:.2f}",
                f"{r['pg_restore']:.1f}",
                f"{r['dq']:.1f} ({_pct(r['dq'], r['wall'])})",
                f"{d['gx_import'] or 0:.1f}",
                "PASS" if d["passed"] else f"{len(d['failed'])} FAILED",
                f"{benchlib.own_cpu(r['cpu']):.0f}",
                f"{r['cpu'].get(benchlib.OTHER_LABEL, 0.0):.0f}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "round",
                "side",
                "wall s",
                "fetch s",
                "createdb s",
                "pg_restore s",
                "DQ s (share)",
                "GX import s",
                "checks",
                "our CPU s",
                "CPU s of other work",
            ],
            rows,
        )
    )
    warnings = sorted({x for r in test_runs for x in r["dq_result"]["stderr"] if "WARNING" in x or "Error" in x})
    if warnings:
        lines += ["", "Warnings printed by the DQ process:", ""] + [f"- `{w[:300]}`" for w in warnings[:10]]
    lines += [
        "",
        "## Where the CPU went (last round; 2 cores = 2.0 CPU-s per wall second)",
        "",
        "Bare createdb + pg_restore:",
        "",
        benchlib.cpu_table(cpu_of(bare_runs[-1]), bare_runs[-1]["wall"]),
        "",
        "Restore test (measured wall, DQ process start-up included):",
        "",
        benchlib.cpu_table(cpu_of(test_runs[-1]), test_runs[-1]["measured"]),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == [DQ_CHILD_FLAG]:
        sys.exit(dq_child())
    sys.exit(main())
