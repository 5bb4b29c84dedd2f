#!/usr/bin/env python3
"""How does each pipeline's time and memory grow with the database's size, and what does that
project for a hospital-sized database on this machine?

For each size (default 1, 2 and 4 GB of generated HMS data), a fresh bench sandbox is loaded in
<repo>/.sandbox-bench-scaling (its generation time is reported apart, never in a figure), then
each pipeline runs beside its bare tool, once, in this order:

- weekly base backup: bare ``pg_basebackup -Ft -X stream`` to local disk | ``take_base_backup``
  (forced full, the policy's settings) into the sandbox's S3;
- physical restore test: bare extract of those plain tars (``tar -xf`` base.tar and pg_wal.tar, as
  the server's OS user) and ``pg_ctl start -w`` until it accepts connections | the restore test's
  physical drill as hms_restore_test runs it (recover to the daily set's snapshot LSN, the checks
  against its baselines, ``pg_checksums`` offline) — run after the daily set exists;
- daily backup: bare ``pg_dump -Fc -f`` | ``take_logical_backup`` + read-back + manifests;
- logical restore test: bare ``createdb`` + ``pg_restore -j2`` of the set's decrypted archive |
  the restore test's logical part (download + proof, decrypt, ``pg_restore -j2``, the checks);
- offsite sync: bare copy of every primary object to a second moto S3 server plus a sha256
  read-back of each copy | ``sync_offsite`` into the same server.

Every pipeline runs in a fresh Python process, as an Airflow task does: its wall is timed inside
that process around the engine's calls (interpreter start-up and imports outside the clock), and
the peak RSS of its process tree (the task process and every tool it starts) is sampled from here.
The WAL between the base backup and the daily set is shipped to the store untimed (hms_wal_archive's
job). Each size's sandbox is deleted before the next size is loaded.

From the sizes it fits, by least squares, seconds = a + b · GB for every side, projects the hours
at 100 GB, 500 GB and 1 TB, says whether a full restore (each restore test) fits the policy's RTO
(targets.rto_minutes) and up to what size, and whether each pipeline's peak RSS is flat (± 10 %)
from the smallest size to the largest. Writes bench/results/<date>-scaling.md.

    PYTHONPATH=plugins:sandbox .venv/bin/python bench/scaling.py [--sizes-gb 1,2,4] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import MB, CpuSampler, fmt_mb, markdown_table

NAME = "scaling"
STATE_DIR = benchlib.REPO / ".sandbox-bench-scaling"
GB = 1_000_000_000
# pg_database_size per generator MB: scale 1100 loads 1,152 MB (bench/results/2026-12-02-*.md).
# Only aims the load: the fits use each size's measured pg_database_size.
DB_BYTES_PER_SCALE_MB = 1.047 * MB
PROJECTED_GB = (100, 500, 1000)
DEFAULT_SIZES_GB = [1.0, 2.0, 4.0]
RSS_FLAT = 0.10  # issue 15: peak RSS flat (± 10 %) from 1 to 4 GB
MIN_R2 = 0.9  # below this, a straight line does not describe the sizes' times: no projection from it
JOBS = 2  # pg_restore -j2 on both sides, as the restore-test bench
CHILD_FLAG = "--child"
RESULT_MARK = "SCALING-RESULT "


@dataclass(frozen=True)
class Pipeline:
    key: str
    title: str
    bare_title: str
    restore: bool = False  # a restore: judged against the RTO


PIPELINES = (
    Pipeline("base", "weekly base backup (take_base_backup, full)", "pg_basebackup -Ft -X stream"),
    Pipeline("daily", "daily backup (take_logical_backup + read-back + manifests)", "pg_dump -Fc -f"),
    Pipeline(
        "restore_logical", "restore test, logical (fetch, decrypt, pg_restore -j2, checks)", "pg_restore -j2", True
    ),
    Pipeline(
        "restore_physical",
        "restore test, physical drill (recover, checks, pg_checksums)",
        "tar -xf + pg_ctl start",
        True,
    ),
    Pipeline("offsite", "offsite sync (sync_offsite)", "copy + sha256 read-back"),
)


# -- the pipelines, each in a fresh process (child mode) -------------------------------------------


@dataclass
class ChildContext:
    """What every pipeline process loads before its clock starts: the sandbox, its policy, the store."""

    sandbox: Any
    policy: Any
    store: Any
    request: dict[str, Any]


def child_base(ctx: ChildContext) -> dict[str, Any]:
    from hms_dr.physical.incremental import BackupTypeRequest

    conn = benchlib.replication_connection(ctx.sandbox)
    # Forced full: a scaling figure of an incremental would measure the day's changes, not the size.
    result = benchlib.take_weekly_base_backup(
        conn, ctx.sandbox, ctx.policy, ctx.store, backup_type=BackupTypeRequest.FULL
    )
    return {"set_id": result["backup_set_id"], "stored": result["sizes"]["stored_bytes"], "steps": result["seconds"]}


def child_daily(ctx: ChildContext) -> dict[str, Any]:
    conn = benchlib.backup_connection(ctx.sandbox)
    out = benchlib.take_daily_set(conn, ctx.sandbox, ctx.policy, ctx.store)
    result = out["result"]
    return {
        "set_id": result["backup_set_id"],
        "stored": sum(p["payload"]["size_bytes"] for d in result["dumps"] for p in d["payloads"]),
        "steps": {k: out[k] for k in ("dump_step", "readback", "publish")},
    }


def _restore_test_plan(ctx: ChildContext, mode: str) -> Any:
    """hms_restore_test's first task (choose_backup_set): the plan for the daily set, in ``mode``."""
    from hms_dr.restore_test.plan import plan_restore_test

    policy = ctx.policy
    params = {"backup_id": ctx.request["set_id"], "mode": mode, "restore_jobs": JOBS, "keep_scratch": False}
    plan = plan_restore_test(
        params,
        triggered_set_id=None,
        store=ctx.store,
        cluster=policy.cluster,
        restore_test=policy.restore_test,
        staging=policy.staging,
        production=benchlib.backup_connection(ctx.sandbox),
        target=benchlib.restore_target_admin(ctx.sandbox),
    )
    if plan.mode.value != mode:
        raise RuntimeError(f"the restore test planned mode {plan.mode.value}, not {mode}")
    return plan


def _no_announce(report: Any, stored_at: str) -> None:
    """The DAG announces the report as an Asset event; there is no Airflow here."""


def child_restore_logical(ctx: ChildContext) -> dict[str, Any]:
    """restore_into_scratch + check_against_baselines (one process here, two tasks in the DAG:
    the checks' Great Expectations import is paid once either way); the drop is not timed."""
    from hms_dr.restore_test import logical

    policy = ctx.policy
    plan = _restore_test_plan(ctx, "logical")
    admin = benchlib.restore_target_admin(ctx.sandbox)
    started = time.monotonic()
    try:
        restored = logical.restore_into_scratch(
            plan,
            store=ctx.store,
            cluster=policy.cluster,
            staging=policy.staging,
            key=benchlib.decryption_key(ctx.sandbox),
            target=admin,
        )
        report = logical.check_logical_restore(
            plan,
            restored,
            target=admin,
            store=ctx.store,
            cluster=policy.cluster,
            restore_test=policy.restore_test,
            staging=policy.staging,
            rto_minutes=policy.rto_minutes,
            announce=_no_announce,
        )
        wall = time.monotonic() - started
    finally:
        logical.drop_scratch_database(plan, target=lambda: admin)
    return {"wall": wall, "steps": report.steps_s, "rto_s": report.rto_s}


def child_restore_physical(ctx: ChildContext) -> dict[str, Any]:
    """recover_for_drill + check_recovered_cluster + verify_checksums_offline; the removal is not timed."""
    from hms_dr.restore_test import drill

    policy = ctx.policy
    plan = _restore_test_plan(ctx, "physical")
    started = time.monotonic()
    try:
        recovered = drill.recover_for_drill(
            plan,
            store=ctx.store,
            cluster=policy.cluster,
            staging=policy.staging,
            key=benchlib.decryption_key(ctx.sandbox),
        )
        recovered_at = time.monotonic()
        drill.check_recovered_cluster(
            plan,
            recovered,
            backup_role=benchlib.backup_connection(ctx.sandbox),
            store=ctx.store,
            cluster=policy.cluster,
            restore_test=policy.restore_test,
            staging=policy.staging,
            rto_minutes=policy.rto_minutes,
            announce=_no_announce,
        )
        checked_at = time.monotonic()
        drill.verify_checksums_offline(recovered)
        wall = time.monotonic() - started
    finally:
        drill.remove_drill_cluster(plan)
    steps = {f"recover: {name}": seconds for name, seconds in recovered.seconds.items()}
    steps.update(
        recover=recovered_at - started, checks=checked_at - recovered_at, pg_checksums=started + wall - checked_at
    )
    return {"wall": wall, "steps": steps}


def child_offsite(ctx: ChildContext) -> dict[str, Any]:
    """copy_missing_sets: every kind within the policy's offsite window, into a fresh bucket."""
    from hms_dr.offsite.sync import sync_offsite
    from hms_dr.store import open_store

    policy = ctx.policy
    client = benchlib.plain_s3_client(ctx.request["endpoint_url"])
    offsite = open_store(
        f"s3://{ctx.request['bucket']}", s3_client=client, part_size_bytes=policy.store.part_size_mib << 20
    )
    report = sync_offsite(
        ctx.store,
        offsite,
        policy.cluster.name,
        window=timedelta(days=policy.retention.offsite_days),
        now=datetime.now(UTC),
        reverify_weeks=policy.offsite.reverify_weeks,
    )
    return {"copied": report.copied_bytes, "steps": {"MB/s": report.copied_bytes / MB / max(report.seconds, 1e-9)}}


CHILD_SIDES: dict[str, Callable[[ChildContext], dict[str, Any]]] = {
    "base": child_base,
    "daily": child_daily,
    "restore_logical": child_restore_logical,
    "restore_physical": child_restore_physical,
    "offsite": child_offsite,
}


def child_main(side: str) -> int:
    """Child mode: the request as JSON on stdin; one RESULT line with the wall and the figures."""
    benchlib.configure_logging(False)
    from hms_dr.policy import load_policy
    from hms_sandbox import load_sandbox

    request = json.load(sys.stdin)
    sandbox = load_sandbox(Path(request["state_dir"]))
    policy = load_policy(sandbox.paths.policy_file)
    ctx = ChildContext(sandbox, policy, benchlib.primary_store(sandbox, policy), request)
    started = time.monotonic()
    out = CHILD_SIDES[side](ctx)
    out.setdefault("wall", time.monotonic() - started)
    print(RESULT_MARK + json.dumps(out, default=str), flush=True)
    return 0


def run_pipeline(side: str, request: dict[str, Any], staging: Path, sampler: CpuSampler) -> dict[str, Any]:
    """One pipeline in a fresh process; its own wall, its tree's peak RSS, the peak of its files
    under ``staging`` (the policy's staging.dir, where base_backup.staging_dir defaults to), the CPU
    while it ran."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, side],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rss = benchlib.peak_rss(child.pid).start()
    disk = benchlib.peak_disk(staging).start()
    sampler.start()
    stdout, stderr = child.communicate(json.dumps(request))
    peak = rss.stop()
    staging_peak = disk.stop()
    cpu = sampler.stop()
    line = next((x for x in stdout.splitlines() if x.startswith(RESULT_MARK)), None)
    if child.returncode != 0 or line is None:
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"the {side} pipeline failed (exit {child.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
    return {**result, "rss": peak, "rss_by_program": rss.at_peak, "staging": staging_peak, "cpu": cpu}


# -- the bare tools --------------------------------------------------------------------------------


def bare_pg_dump(conn: Any, workdir: Path, sampler: CpuSampler) -> dict[str, Any]:
    from hms_dr.database import client_tools
    from hms_dr.pgtools import tool_env

    target = workdir / "bare.pgdump"
    argv = [client_tools(conn).program("pg_dump"), "-Fc", "-f", str(target), "--no-password"]
    wall, _, cpu = benchlib.measure(lambda: subprocess.run(argv, env=tool_env(conn), check=True), sampler)
    target.unlink()
    return {"wall": wall, "cpu": cpu}


def bare_pg_basebackup(conn: Any, target: Path, sampler: CpuSampler) -> dict[str, Any]:
    """The bare tars are kept for the bare physical restore."""
    from hms_dr.pgtools import tool_env

    argv = benchlib.bare_pg_basebackup_argv(conn, target)
    run = lambda: subprocess.run(argv, env=tool_env(conn), stdin=subprocess.DEVNULL, check=True)  # noqa: E731
    wall, _, cpu = benchlib.measure(run, sampler)
    return {"wall": wall, "cpu": cpu}


def bare_physical_restore(tars: Path, workdir: Path, sampler: CpuSampler) -> dict[str, Any]:
    """What an operator types to restore a plain ``-Ft -X stream`` backup by hand: extract base.tar
    and pg_wal.tar as the server's OS user, ``pg_ctl start -w`` (the backup's WAL replayed to
    consistency) until it accepts connections. Archiving is off, as the drill's server: a copy of
    production must not archive into its spool. The stop and the removal are not timed."""
    from hms_dr.pginstalls import data_dir_major, data_install
    from hms_dr.server_user import free_port, prepare_server_dir, run_server_tool

    for path in (tars, *tars.iterdir()):  # not timed: the tars are root's, pg_basebackup ran as root
        path.chmod(0o755 if path.is_dir() else 0o644)
    home = workdir / "bare-physical"
    data, sockets, logs = home / "data", home / "s", home / "log"
    for directory in (data, sockets, logs):
        prepare_server_dir(directory, 0o700)
    port = free_port()
    options = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} -c archive_mode=off"

    def restore() -> None:
        run_server_tool(["tar", "-xf", tars / "base.tar", "-C", data])
        run_server_tool(["tar", "-xf", tars / "pg_wal.tar", "-C", data / "pg_wal"])
        pg_ctl = data_install(data_dir_major(data), data=str(data)).program("pg_ctl")
        run_server_tool([pg_ctl, "-D", data, "-l", logs / "server.log", "-o", options, "-w", "-t", "3600", "start"])

    try:
        wall, _, cpu = benchlib.measure(restore, sampler)
    finally:
        if (data / "postmaster.pid").exists():
            pg_ctl = data_install(data_dir_major(data), data=str(data)).program("pg_ctl")
            run_server_tool([pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(home, ignore_errors=True)
    return {"wall": wall, "cpu": cpu}


def bare_offsite_copy(sandbox: Any, policy: Any, endpoint_url: str, sampler: CpuSampler) -> dict[str, Any]:
    """Every object of the primary bucket copied into a fresh bucket of the offsite server, each
    copy read back and hashed; the bucket is dropped afterwards (not timed)."""
    source = benchlib.s3_client(sandbox)
    objects = benchlib.primary_store(sandbox, policy).list("")
    keys = [o.key for o in objects]
    destination = benchlib.plain_s3_client(endpoint_url)
    bucket = fresh_bucket(destination)

    def copy() -> None:
        benchlib.bare_s3_copy(
            source,
            sandbox.primary_bucket,
            destination,
            bucket,
            keys,
            part_mib=policy.store.part_size_mib,
            prove=True,
        )

    try:
        wall, _, cpu = benchlib.measure(copy, sampler)
    finally:
        benchlib.empty_and_drop_bucket(destination, bucket)
    return {"wall": wall, "cpu": cpu, "copied": sum(o.size_bytes for o in objects)}


def fresh_bucket(client: Any) -> str:
    bucket = f"hms-offsite-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return bucket


# -- one size --------------------------------------------------------------------------------------


@dataclass
class SizeRun:
    """One size's figures: the database, its generation, and per pipeline the bare and pipeline runs."""

    size_gb: float
    db_bytes: int = 0
    pg_version: str = "?"
    generation_s: float = 0.0
    bare: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipeline: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def db_gb(self) -> float:
        return self.db_bytes / GB


def remove_state_dir() -> None:
    """Stop and delete the scaling sandbox (every byte a size made: data, spool, staging, moto)."""
    if STATE_DIR.exists():
        benchlib.stop_bench_sandbox(state_dir=STATE_DIR)
        shutil.rmtree(STATE_DIR)
        print(f"removed {STATE_DIR}", flush=True)


def generate(run: SizeRun) -> Any:
    """A fresh sandbox loaded at this size and vacuumed; the WAL of both archived and dropped from the
    spool (nothing here recovers to before the first backup, and shipping it would time the load)."""
    remove_state_dir()
    started = time.monotonic()
    sandbox = benchlib.start_bench_sandbox(run.size_gb * GB / DB_BYTES_PER_SCALE_MB, state_dir=STATE_DIR)
    # Freshly loaded rows carry no hint bits: the first scan (the bare pg_dump) would set them on
    # every page and, with data checksums, write each page to the WAL again, a database's worth that
    # the physical drill would then replay. A hospital's database has lived: its pages are hinted.
    benchlib.vacuum(sandbox.superuser_dsn(sandbox.database))
    run.generation_s = time.monotonic() - started
    run.db_bytes = benchlib.database_size(benchlib.backup_connection(sandbox))
    run.pg_version = benchlib.server_version(benchlib.backup_connection(sandbox))
    current = benchlib.switch_and_archive_wal(sandbox, sandbox.superuser_dsn(), timeout_s=1800)
    benchlib.drop_spool_before(sandbox, current)
    print(f"{run.size_gb:g} GB: database {fmt_mb(run.db_bytes)} generated in {run.generation_s:.0f} s", flush=True)
    return sandbox


def record(run: SizeRun, key: str, bare: dict[str, Any] | None, pipeline: dict[str, Any] | None) -> None:
    if bare is not None:
        run.bare[key] = bare
    if pipeline is not None:
        run.pipeline[key] = pipeline
        print(
            f"{run.size_gb:g} GB: {key:16s} bare {run.bare[key]['wall']:7.1f} s  pipeline {pipeline['wall']:7.1f} s  "
            f"peak RSS {pipeline['rss'] / MIB_F:,.0f} MiB",
            flush=True,
        )


MIB_F = float(benchlib.MIB)


def run_size(size_gb: float) -> SizeRun:
    """Generate, run every pipeline beside its bare tool, delete (unless the caller keeps it)."""
    from hms_dr.policy import load_policy
    from hms_sandbox.cluster import free_port
    from hms_sandbox.s3server import MotoServer

    run = SizeRun(size_gb)
    sandbox = generate(run)
    policy = load_policy(sandbox.paths.policy_file)
    store = benchlib.empty_primary_store(sandbox, policy)
    benchlib.clean_restore_target(benchlib.restore_target_admin(sandbox))
    cpu_of_primary = {"moto_pid": sandbox.s3_server().pid(), "postmaster_pid": sandbox.cluster().postmaster_pid()}
    cpu_of_target = {**cpu_of_primary, "postmaster_pid": benchlib.restore_target_postmaster_pid(sandbox)}
    request = {"state_dir": str(STATE_DIR)}
    with tempfile.TemporaryDirectory(prefix="bench-", dir=STATE_DIR) as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o711)  # the bare restored server's directory lives here
        tars = workdir / "bare-tars"
        run.bare["base"] = bare_pg_basebackup(
            benchlib.replication_connection(sandbox), tars, CpuSampler(**cpu_of_primary)
        )
        run.bare["restore_physical"] = bare_physical_restore(tars, workdir, CpuSampler())
        shutil.rmtree(tars)
        record(run, "base", None, run_pipeline("base", request, policy.staging.dir, CpuSampler(**cpu_of_primary)))

        run.bare["daily"] = bare_pg_dump(benchlib.backup_connection(sandbox), workdir, CpuSampler(**cpu_of_primary))
        daily = run_pipeline("daily", request, policy.staging.dir, CpuSampler(**cpu_of_primary))
        record(run, "daily", None, daily)
        # The drill recovers to the daily set's snapshot: the WAL since the base backup goes to the store.
        benchlib.switch_and_archive_wal(sandbox, sandbox.superuser_dsn())
        benchlib.ship_wal(sandbox, store, policy)

        set_request = {**request, "set_id": daily["set_id"]}
        admin = benchlib.restore_target_admin(sandbox)
        kept = benchlib.fetch_kept_dump(store, policy, benchlib.decryption_key(sandbox), daily["set_id"], workdir)
        run.bare["restore_logical"] = benchlib.bare_pg_restore(admin, kept.path, JOBS, CpuSampler(**cpu_of_target))
        kept.path.unlink()
        logical = run_pipeline("restore_logical", set_request, policy.staging.dir, CpuSampler(**cpu_of_target))
        record(run, "restore_logical", None, logical)
        record(
            run,
            "restore_physical",
            None,
            run_pipeline("restore_physical", set_request, policy.staging.dir, CpuSampler()),
        )

        offsite_server = MotoServer(free_port(), workdir / "offsite-s3")
        offsite_server.start()
        try:
            endpoint = offsite_server.endpoint_url
            run.bare["offsite"] = bare_offsite_copy(sandbox, policy, endpoint, CpuSampler())
            client = benchlib.plain_s3_client(endpoint)
            bucket = fresh_bucket(client)
            offsite_request = {**request, "endpoint_url": endpoint, "bucket": bucket}
            record(run, "offsite", None, run_pipeline("offsite", offsite_request, policy.staging.dir, CpuSampler()))
        finally:
            offsite_server.stop()
    return run


# -- fits and the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """seconds = intercept + per_gb · GB, least squares over the sizes."""

    intercept: float
    per_gb: float
    r2: float

    @classmethod
    def of(cls, xs: Sequence[float], ys: Sequence[float]) -> Fit:
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        intercept = my - slope * mx
        ss_tot = sum((y - my) ** 2 for y in ys)
        ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
        return cls(intercept, slope, 1 - ss_res / ss_tot if ss_tot else 1.0)

    def hours(self, gb: float) -> float:
        return (self.intercept + self.per_gb * gb) / 3600

    def largest_gb_within(self, seconds: float) -> float | None:
        """The size this fit finishes within ``seconds`` (None: never, or no growth measured)."""
        if self.per_gb <= 0:
            return None
        return max(0.0, (seconds - self.intercept) / self.per_gb)


def fits(runs: Sequence[SizeRun], side: str) -> dict[str, Fit]:
    """The bare tool's and the pipeline's fit of wall seconds on the database's GB."""
    xs = [r.db_gb for r in runs]
    return {
        "bare": Fit.of(xs, [r.bare[side]["wall"] for r in runs]),
        "pipeline": Fit.of(xs, [r.pipeline[side]["wall"] for r in runs]),
    }


def rss_verdict(runs: Sequence[SizeRun], side: str) -> tuple[float, str]:
    """The largest size's peak over the smallest's, minus one, and whether that is within ± 10 %."""
    first, last = runs[0].pipeline[side]["rss"], runs[-1].pipeline[side]["rss"]
    change = last / first - 1
    return change, "flat" if abs(change) <= RSS_FLAT else "NOT flat"


def _ratio(run: SizeRun, side: str) -> str:
    return f"{run.pipeline[side]['wall'] / run.bare[side]['wall']:.2f}"


def per_size_table(runs: Sequence[SizeRun]) -> str:
    rows = []
    for p in PIPELINES:
        for r in runs:
            bare, pipe = r.bare[p.key], r.pipeline[p.key]
            rows.append(
                [
                    p.title,
                    f"{r.db_gb:.2f}",
                    f"{bare['wall']:.1f}",
                    f"{pipe['wall']:.1f}",
                    _ratio(r, p.key),
                    f"{pipe['rss'] / MIB_F:,.0f}",
                    f"{pipe['staging'] / MIB_F:,.0f}",
                    f"{pipe['cpu'].get(benchlib.OTHER_LABEL, 0.0) + bare['cpu'].get(benchlib.OTHER_LABEL, 0.0):.0f}",
                ]
            )
    header = [
        "pipeline",
        "database GB",
        "bare s",
        "pipeline s",
        "pipeline / bare",
        "peak RSS MiB",
        "peak staging MiB",
        "CPU s of other work (bare + pipeline)",
    ]
    return markdown_table(header, rows)


def fit_table(runs: Sequence[SizeRun]) -> str:
    rows = []
    for p in PIPELINES:
        fitted = fits(runs, p.key)
        change, verdict = rss_verdict(runs, p.key)
        for name, title in (("bare", p.bare_title), ("pipeline", p.title)):
            f = fitted[name]
            rss = f"{change:+.0%} ({verdict})" if name == "pipeline" else ""
            rows.append(
                [
                    title,
                    f"{f.per_gb:.1f}",
                    f"{f.intercept:.1f}",
                    f"{f.r2:.3f}",
                    *(f"{f.hours(gb):.1f}" for gb in PROJECTED_GB),
                    rss,
                ]
            )
    header = ["side", "s per GB", "fixed s", "R²", *(f"h at {gb:g} GB" for gb in PROJECTED_GB), "peak RSS change"]
    return markdown_table(header, rows)


def _steps_cell(steps: dict[str, Any]) -> str:
    return "; ".join(f"{name} {float(v):.1f}" for name, v in steps.items() if isinstance(v, (int, float)))


def _rss_cell(by_program: dict[str, int]) -> str:
    top = sorted(by_program.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{name} {rss / MIB_F:,.0f}" for name, rss in top)


def details_table(runs: Sequence[SizeRun]) -> str:
    """Where each pipeline's time goes (its engine's own step timings) and who holds the memory at its peak."""
    rows = []
    for p in PIPELINES:
        for r in runs:
            pipe = r.pipeline[p.key]
            copied = (
                f" (copied {fmt_mb(pipe['copied'])}; bare {fmt_mb(r.bare[p.key]['copied'])})"
                if "copied" in pipe
                else ""
            )
            rows.append(
                [
                    p.key,
                    f"{r.db_gb:.2f}",
                    _steps_cell(pipe.get("steps", {})) + copied,
                    _rss_cell(pipe["rss_by_program"]),
                ]
            )
    return markdown_table(
        ["pipeline", "database GB", "steps s (the engine's timings)", "RSS MiB at the peak, per program"], rows
    )


def rto_lines(runs: Sequence[SizeRun], rto_minutes: int) -> list[str]:
    lines = []
    for p in PIPELINES:
        if not p.restore:
            continue
        f = fits(runs, p.key)["pipeline"]
        verdicts = ", ".join(
            f"{gb:g} GB {f.hours(gb):.1f} h ({'fits' if f.hours(gb) * 60 <= rto_minutes else 'does NOT fit'})"
            for gb in PROJECTED_GB
        )
        largest = f.largest_gb_within(rto_minutes * 60)
        limit = f"largest database within the RTO: {largest:,.0f} GB" if largest is not None else "no growth measured"
        lines.append(f"- {p.title}: {verdicts}; {limit}.")
    return lines


def unreliable_fits(runs: Sequence[SizeRun]) -> list[str]:
    """A warning naming the fits whose line explains little of the times (a busy machine, sizes too
    small for the per-GB cost to stand out of the fixed costs): their projections mean little."""
    weak = [
        f"{title} (R² {f.r2:.2f})"
        for p in PIPELINES
        for name, title in (("bare", p.bare_title), ("pipeline", p.key))
        if (f := fits(runs, p.key)[name]).r2 < MIN_R2
    ]
    if not weak:
        return []
    return ["", f"**Fits too noisy to project from (R² < {MIN_R2})**: " + ", ".join(weak) + "."]


def report(runs: Sequence[SizeRun], rto_minutes: int, part_mib: int, args: argparse.Namespace, elapsed: float) -> str:
    generation = ", ".join(f"{r.size_gb:g} GB ({fmt_mb(r.db_bytes)}) {r.generation_s:.0f} s" for r in runs)
    lines = [
        f"Command: `{' '.join(['bench/scaling.py', *sys.argv[1:]])}`; one run of each side per size; "
        f"the whole run took {elapsed / 60:.1f} min.",
        "Sizes are the HMS database's pg_database_size (GB = 10^9 bytes); each size is a freshly generated sandbox.",
        f"Data generation, load + VACUUM (not in any figure): {generation}.",
        "Pipelines run in a fresh Python process each, timed inside it around the engine's calls; peak RSS is the",
        "sampled (every 0.1 s) sum over that process and every tool it starts (servers excluded).",
        "",
        "## Per size",
        "",
        per_size_table(runs),
        "",
        "## Fit (least squares, seconds = fixed + per GB × GB) and projection on this machine",
        "",
        fit_table(runs),
        "",
        f"## Does a full restore fit the RTO ({rto_minutes} min, policy targets.rto_minutes)?",
        "",
        *rto_lines(runs, rto_minutes),
        "",
        "Peak staging is the most bytes the pipeline's files took at once under the policy's staging.dir on",
        "local disk (the base backup's tars and extracted copy, the restore test's dump, the drill's recovered cluster).",
        f"Peak RSS is 'flat' when the largest size's peak is within ± {RSS_FLAT:.0%} of the smallest's. The store's",
        f"upload buffers (parts of store.part_size_mib = {part_mib} MiB, two in flight) fill up only once a payload",
        "outgrows them, so below about 0.5 GB of database a pipeline's RSS is expected to grow with its payloads;",
        "the verdict means something from 1 GB on.",
        *unreliable_fits(runs),
        "",
        "## Where the time and the memory go",
        "",
        details_table(runs),
    ]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[float]:
    sizes = sorted(float(x) for x in text.split(",") if x.strip())
    if len(sizes) < 2 or sizes[0] <= 0:
        raise argparse.ArgumentTypeError("give at least two positive sizes, e.g. 1,2,4")
    return sizes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes-gb",
        type=parse_sizes,
        default=DEFAULT_SIZES_GB,
        help="database sizes to generate, in GB (default 1,2,4; e.g. 0.1,0.2,0.4 to check the bench quickly)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the last size's sandbox running")
    parser.add_argument("--verbose", action="store_true", help="print the engine's INFO log lines")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    benchlib.configure_logging(args.verbose)
    from hms_dr.policy import DEFAULT_POLICY_PATH, load_policy

    machine = benchlib.machine_info()
    busy = benchlib.busy_other_processes()
    if busy:
        print("WARNING: other processes are busy on this shared machine: " + "; ".join(busy))
    started = time.monotonic()
    runs: list[SizeRun] = []
    try:
        for size in args.sizes_gb:
            runs.append(run_size(size))
            if not (args.keep and size == args.sizes_gb[-1]):
                remove_state_dir()  # before the next size: one size's data on disk at a time
    finally:
        if not args.keep:
            remove_state_dir()
    policy = load_policy(DEFAULT_POLICY_PATH)  # production's RTO and part size (the sandbox's copy has the same)
    body = report(runs, policy.rto_minutes, policy.store.part_size_mib, args, time.monotonic() - started)
    print()
    print(body)
    sizes = "-".join(f"{gb:g}" for gb in args.sizes_gb)
    full_run = args.sizes_gb == DEFAULT_SIZES_GB
    # A quick check at other sizes must not pass for the 1/2/4 GB figures the README is filled from.
    name, title = (
        (NAME, "") if full_run else (f"{NAME}-{sizes}gb-check", f" (check run at {sizes.replace('-', ', ')} GB only)")
    )
    benchlib.write_results(
        name,
        f"Scaling: time and memory by database size, projected{title}",
        machine,
        runs[-1].pg_version,
        body + benchlib.busy_section(busy),
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD_FLAG]:
        sys.exit(child_main(sys.argv[2]))
    sys.exit(main())
