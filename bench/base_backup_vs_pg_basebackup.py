#!/usr/bin/env python3
"""How much longer does the weekly base backup take than a bare `pg_basebackup -Ft -X stream`?

On the bench sandbox's cluster (an HMS database of ≥ 1 GB in <repo>/.sandbox-bench), alternating
rounds of:

- bare:       ``pg_basebackup -D <dir> -Ft -X stream --checkpoint=fast`` as hms_replica to local
              disk (the password in the environment), plain tars, nothing else;
- pipeline:   what hms_weekly_base_backup's back_up_cluster task does, without Airflow:
              ``take_base_backup`` with the policy's base_backup settings, each step timed by the
              engine itself, in three variants: the streamed method (pg_basebackup's stream proven
              and stored as it comes) into the sandbox's moto S3, the same into a file store on
              local disk (as pgBackRest's repository is; moto's own CPU is not a cost with real
              S3), and the staged method (tars on disk, pg_verifybackup, then upload) into moto;
- pgBackRest: ``pgbackrest backup --type=full`` of the same cluster to a local repository
              (zstd at the policy's level, aes-256-cbc, process-max=2, start-fast), run as the
              server's OS user with a config in a temp dir; installed with apt-get when missing
              and root. With ``archive-check=n``, since the sandbox archives WAL into its own
              spool, not into pgBackRest's repo: its set holds no WAL (``archive-copy`` needs the
              archive check), while the other two sides carry the backup's WAL in pg_wal.tar.
              When it cannot be set up, the side is reported as not set up, with the reason.

Prints medians, the pipeline / bare and pipeline / pgBackRest ratios, the pipeline's steps,
each side's output size and where the CPU went; writes
bench/results/<date>-base-backup-vs-pg-basebackup.md.

    PYTHONPATH=plugins .venv/bin/python bench/base_backup_vs_pg_basebackup.py [--rounds 2] [--no-pgbackrest] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import MB, CpuSampler, fmt_mb, markdown_table, median

NAME = "base-backup-vs-pg-basebackup"
STANZA = "hms"
PGBACKREST_PROCESSES = 2
WAL_TAR = "pg_wal.tar"
PGBACKREST_REPORTED = (
    "compress-type",
    "compress-level",
    "process-max",
    "repo1-cipher-type",
    "start-fast",
    "archive-check",
)
# (key in take_base_backup's "seconds", what the step does)
PIPELINE_STEPS = (
    ("preflight", "preflight (tools, role, staging space, key)"),
    ("pg_basebackup", "pg_basebackup -Ft -X stream (SHA256 manifest)"),
    ("verify", "extract + pg_verifybackup"),
    ("upload", "zstd | gpg | S3 upload, per tar"),
    ("readback", "read-back (GET + sha256)"),
    ("publish", "manifest.json (publish_set) and the rest"),
)
# The sampler's labels are written for the daily backup; these say what the same threads do here.
CPU_LABELS = {
    "python main thread (reads gpg output, sha256, S3 put; read-back GET + sha256)": "python main thread (tar extraction for pg_verifybackup, reads gpg output, sha256, S3 put; read-back GET + sha256)",
    "python tap thread (pipe copy, sha256 of plain bytes, feed pg_restore)": "python tap thread (feeds the tar to zstd, sha256 of plain bytes)",
    "python other threads (stderr drains, pg_restore reader)": "python other threads (progress log, stderr drains)",
    "postgres background processes (bench cluster)": "postgres background processes and other backends (bench cluster)",
    "runuser": "runuser (starts pgbackrest as postgres)",
}


# -- bare pg_basebackup ----------------------------------------------------------------------------


def run_bare(conn: Any, workdir: Path, sampler: CpuSampler) -> dict[str, Any]:
    from hms_dr.pgtools import tool_env

    target = workdir / "bare"
    shutil.rmtree(target, ignore_errors=True)

    def backup() -> None:
        subprocess.run(
            benchlib.bare_pg_basebackup_argv(conn, target), env=tool_env(conn), stdin=subprocess.DEVNULL, check=True
        )

    wall, _, cpu = benchlib.measure(backup, sampler)
    sizes = {p.name: p.stat().st_size for p in target.iterdir()}
    shutil.rmtree(target)
    return {"wall": wall, "cpu": cpu, "size": sum(sizes.values()), "wal": sizes.get(WAL_TAR, 0)}


# -- the pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of running the pipeline: its copy method and where it stores."""

    side: str
    described: str
    method: str  # base_backup.method
    store: str  # "s3" (the sandbox's moto) or "file" (a file store on the bench's local disk)


VARIANTS = (
    Variant("pipeline", "streamed (the default), moto S3", "streamed", "s3"),
    Variant("pipeline-file", "streamed, file store on local disk (pgBackRest's repo is local too)", "streamed", "file"),
    Variant(
        "staged", "staged (tars on disk, pg_verifybackup, then upload; the method before), moto S3", "staged", "s3"
    ),
)


def run_pipeline(
    conn: Any, sandbox: Any, policy: Any, store: Any, sampler: CpuSampler, variant: Variant
) -> dict[str, Any]:
    """take_base_backup with the arguments back_up_cluster passes; the set is deleted afterwards."""
    from hms_dr.policy.base_backup import BaseBackupMethod

    def backup() -> dict[str, Any]:
        return benchlib.take_weekly_base_backup(conn, sandbox, policy, store, method=BaseBackupMethod(variant.method))

    wall, result, cpu = benchlib.measure(backup, sampler)
    delete_set(store, policy.cluster.name, result["backup_set_id"])  # not timed: moto keeps sets in memory
    wal: dict[str, Any] = next((p for p in result["payloads"] if p["name"].startswith(WAL_TAR)), {})
    return {
        "wall": wall,
        "cpu": cpu,
        "steps": pipeline_steps(result["seconds"]),
        "cluster": result["sizes"]["cluster_bytes"],
        "plain": result["sizes"]["plain_bytes"],
        "size": result["sizes"]["stored_bytes"],
        "wal": wal.get("size_bytes", 0),
        "wal_plain": wal.get("plain_size_bytes", 0),
        "payloads": len(result["payloads"]),
        "staged_peak": result["sizes"]["staged_peak_bytes"],
    }


def pipeline_steps(seconds: dict[str, float]) -> dict[str, float]:
    """The engine's own step timings; what its total leaves over is publication and bookkeeping."""
    steps = {name: float(seconds.get(name, 0.0)) for name, _ in PIPELINE_STEPS if name != "publish"}
    steps["publish"] = (
        float(seconds["publish"]) if "publish" in seconds else max(0.0, seconds["total"] - sum(steps.values()))
    )
    return steps


def delete_set(store: Any, cluster: str, backup_set_id: str) -> None:
    from hms_dr.catalog import key_for
    from hms_dr.manifest import BackupKind

    for stored in store.list(key_for(cluster, BackupKind.BASE, backup_set_id)):
        store.delete(stored.key)


# -- pgBackRest ------------------------------------------------------------------------------------


def ensure_pgbackrest() -> str | None:
    """None when pgbackrest can run; else why not. Installs the Debian package when missing and root."""
    if shutil.which("pgbackrest"):
        return None
    if os.geteuid() != 0:
        return "pgbackrest is not installed and this is not root (apt-get install pgbackrest)"
    print("pgbackrest is missing: apt-get install -y pgbackrest ...", flush=True)
    done = _apt_get("install", "-y", "pgbackrest")
    if done.returncode != 0 and "Unable to locate package" in done.stderr:
        _apt_get("update")
        done = _apt_get("install", "-y", "pgbackrest")
    if done.returncode != 0 or not shutil.which("pgbackrest"):
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return f"apt-get install -y pgbackrest failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
    return None


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(["apt-get", *args], 1, "", str(exc))


@dataclass
class PgBackRest:
    """pgBackRest with its config, log, lock and repository in one temp dir owned by the server user."""

    root: Path
    settings: dict[str, str]
    password: str

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @classmethod
    def set_up(cls, sandbox: Any, zstd_level: int) -> PgBackRest:
        """A temp dir in the bench state dir with the config (0600, the server user's) and log and lock dirs."""
        from hms_sandbox.cluster import SUPERUSER, prepare_server_dir

        root = Path(tempfile.mkdtemp(prefix="pgbackrest-", dir=benchlib.BENCH_STATE_DIR))
        try:
            for directory in (root, root / "log", root / "lock"):
                prepare_server_dir(directory, 0o700)
            settings = pgbackrest_settings(root, sandbox, zstd_level)
            cipher_pass = secrets.token_urlsafe(32)
            config = [
                "[global]",
                *(f"{k}={v}" for k, v in settings.items() if not k.startswith("pg1-")),
                f"repo1-cipher-pass={cipher_pass}",
                "",
                f"[{STANZA}]",
                *(f"{k}={v}" for k, v in settings.items() if k.startswith("pg1-")),
            ]
            _write_server_file(root / "pgbackrest.conf", "\n".join(config) + "\n")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(root, settings, sandbox.secrets.role_passwords[SUPERUSER])

    def command(self, *args: str) -> list[str]:
        from hms_sandbox.cluster import server_command

        return server_command(["pgbackrest", f"--config-path={self.root}", f"--stanza={STANZA}", *args])

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One pgbackrest command as the server user; the superuser's password in its environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"PGPASSWORD": self.password}
        done = subprocess.run(
            self.command(*args), env=env, cwd="/", capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            raise RuntimeError(f"pgbackrest {args[0]} exited {done.returncode}: {lines[-1] if lines else 'no output'}")
        return done

    def fresh_repo(self) -> None:
        from hms_sandbox.cluster import prepare_server_dir

        shutil.rmtree(self.repo, ignore_errors=True)
        prepare_server_dir(self.repo, 0o750)
        self.run("stanza-create")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def pgbackrest_settings(root: Path, sandbox: Any, zstd_level: int) -> dict[str, str]:
    """The options of the comparison: full backups compressed like the pipeline's, encrypted, 2 processes,
    a local repository; the stanza (pg1-*) is the sandbox's primary, reached over its Unix socket."""
    from hms_sandbox.cluster import SUPERUSER

    return {
        "repo1-path": str(root / "repo"),
        "repo1-retention-full": "2",
        "repo1-cipher-type": "aes-256-cbc",
        "compress-type": "zst",
        "compress-level": str(zstd_level),
        "process-max": str(PGBACKREST_PROCESSES),
        "start-fast": "y",
        "archive-check": "n",  # the sandbox archives into its own spool, not into this repo
        "log-path": str(root / "log"),
        "lock-path": str(root / "lock"),
        "log-level-console": "info",
        "log-level-file": "off",
        "pg1-path": str(sandbox.paths.data_dir.absolute()),
        "pg1-port": str(sandbox.pg_port),
        "pg1-socket-path": str(sandbox.paths.socket_dir.absolute()),
        "pg1-user": SUPERUSER,
    }


def _write_server_file(path: Path, text: str) -> None:
    """A 0600 file the server user owns (the config holds the repository's cipher passphrase)."""
    from hms_sandbox.cluster import SERVER_OS_USER, server_user

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    if server_user() is not None:
        shutil.chown(path, SERVER_OS_USER, SERVER_OS_USER)


def run_pgbackrest(pgbr: PgBackRest, sampler: CpuSampler) -> dict[str, Any]:
    """One full backup into a fresh repository (stanza-create before, not timed); the repo is emptied after."""
    pgbr.fresh_repo()
    wall, _, cpu = benchlib.measure(lambda: pgbr.run("backup", "--type=full"), sampler)
    size = benchlib.tree_bytes(pgbr.repo)
    info = backup_info(pgbr)
    shutil.rmtree(pgbr.repo, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "size": size, "wal": 0, **info}


def backup_info(pgbr: PgBackRest) -> dict[str, Any]:
    """The label and sizes pgBackRest records for the backup just taken."""
    stanzas = json.loads(pgbr.run("info", "--output=json").stdout)
    backup = stanzas[0]["backup"][-1]
    return {
        "label": backup["label"],
        "plain": backup["info"]["size"],
        "repo_size": backup["info"]["repository"]["size"],
    }


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class PgBackRestSide:
    """The pgBackRest side: set up, or why not (the bench goes on without it)."""

    missing: str | None
    tool: PgBackRest | None = None

    def set_up(self, sandbox: Any, zstd_level: int) -> None:
        if self.missing is None:
            try:
                self.tool = PgBackRest.set_up(sandbox, zstd_level)
            except Exception as exc:
                self.missing = f"set-up failed: {exc}"
        if self.missing is not None:
            print(f"pgBackRest side: not set up here: {self.missing}", flush=True)

    def disable(self, reason: str) -> None:
        self.remove()
        self.tool, self.missing = None, reason
        print(f"pgBackRest side: not set up here: {reason}", flush=True)

    def remove(self) -> None:
        if self.tool is not None:
            self.tool.remove()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale-mb",
        type=float,
        default=1100,
        help="HMS data generator scale for the sandbox's first load (default 1100: ≥ 1 GB)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds of bare / pipeline / pgBackRest (default 2)"
    )
    parser.add_argument("--no-pgbackrest", action="store_true", help="skip the pgBackRest side")
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox running")
    parser.add_argument("--verbose", action="store_true", help="print the engine's INFO log lines")
    return parser.parse_args()


def describe_run(sandbox: Any, policy: Any, with_pgbackrest: bool) -> dict[str, Any]:
    """Database size, server and tool versions, the machine and its other busy processes; printed too."""
    from hms_dr.database import client_tools

    conn = benchlib.backup_connection(sandbox)
    db_size = benchlib.database_size(conn)
    tools = {"pg_basebackup": [client_tools(conn).program("pg_basebackup"), "--version"]}
    if with_pgbackrest:
        tools["pgbackrest"] = ["pgbackrest", "version"]
    print(f"database {sandbox.database}: pg_database_size = {fmt_mb(db_size)} ({db_size / 2**30:.2f} GiB)")
    if db_size < 10**9:
        print(
            f"WARNING: the database is under 1 GB; a sandbox loaded earlier at a smaller scale is reused (remove {benchlib.BENCH_STATE_DIR} to reload)"
        )
    busy = benchlib.busy_other_processes()
    if busy:
        print("WARNING: other processes are busy on this shared machine: " + "; ".join(busy))
    settings = policy.base_backup
    print(
        f"policy: base_backup zstd -{settings.zstd_level} -T{settings.zstd_threads}, staging {settings.staging_dir} "
        f"(ratio {settings.staging_space_ratio}), part size {policy.store.part_size_mib} MiB, verify_readback {policy.store.verify_readback}"
    )
    return {
        "db_size": db_size,
        "pg_version": benchlib.server_version(conn),
        "machine": benchlib.machine_info(tools),
        "busy": busy,
    }


def run_rounds(rounds: int, sandbox: Any, policy: Any, pgbackrest: PgBackRestSide) -> dict[str, list[dict[str, Any]]]:
    """Alternating rounds of bare, pipeline, pgBackRest; every run's figures per side."""
    conn = benchlib.replication_connection(sandbox)
    store = benchlib.empty_primary_store(sandbox, policy)
    sampler_args = {"moto_pid": sandbox.s3_server().pid(), "postmaster_pid": sandbox.cluster().postmaster_pid()}
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], **{v.side: [] for v in VARIANTS}, "pgbackrest": []}
    with tempfile.TemporaryDirectory(prefix="bench-", dir=benchlib.BENCH_STATE_DIR) as tmp:
        from hms_dr.store import open_store

        (Path(tmp) / "file-store").mkdir(mode=0o700)
        stores = {"s3": store, "file": open_store(f"file://{tmp}/file-store")}
        for round_no in range(1, rounds + 1):
            runs["bare"].append(run_bare(conn, Path(tmp), CpuSampler(**sampler_args)))
            print_run(round_no, "bare", runs["bare"][-1])
            for variant in VARIANTS:
                run = run_pipeline(conn, sandbox, policy, stores[variant.store], CpuSampler(**sampler_args), variant)
                runs[variant.side].append(run)
                print_run(round_no, variant.side, run)
            if pgbackrest.tool is None:
                continue
            try:
                runs["pgbackrest"].append(run_pgbackrest(pgbackrest.tool, CpuSampler(**sampler_args)))
            except Exception as exc:
                pgbackrest.disable(f"pgbackrest failed in round {round_no}: {exc}")
                runs["pgbackrest"].clear()
                continue
            print_run(round_no, "pgbackrest", runs["pgbackrest"][-1])
    return runs


def print_run(round_no: int, side: str, run: dict[str, Any]) -> None:
    if side == "bare":
        what = f"bare pg_basebackup  {run['wall']:7.1f} s  {fmt_mb(run['size'])} on disk"
    elif side != "pgbackrest":
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in run["steps"].items())
        what = f"{side:18} {run['wall']:7.1f} s  ({steps})  {fmt_mb(run['size'])} stored"
    else:
        what = f"pgBackRest full    {run['wall']:7.1f} s  {fmt_mb(run['size'])} in the repo"
    print(f"round {round_no}: {what}", flush=True)


def main() -> int:
    args = parse_args()
    benchlib.configure_logging(args.verbose)
    from hms_dr.policy import load_policy

    pgbackrest = PgBackRestSide("skipped (--no-pgbackrest)" if args.no_pgbackrest else ensure_pgbackrest())
    sandbox = benchlib.start_bench_sandbox(args.scale_mb)
    try:
        policy = load_policy(sandbox.paths.policy_file)
        facts = describe_run(sandbox, policy, with_pgbackrest=pgbackrest.missing is None)
        pgbackrest.set_up(sandbox, policy.base_backup.zstd_level)
        runs = run_rounds(args.rounds, sandbox, policy, pgbackrest)
    finally:
        pgbackrest.remove()
        if args.keep:
            print(f"--keep: the bench sandbox keeps running in {benchlib.BENCH_STATE_DIR}")
        else:
            benchlib.stop_bench_sandbox()

    body = report(facts["db_size"], policy, runs, pgbackrest, args)
    print()
    print(body)
    benchlib.write_results(
        NAME,
        "Weekly base backup vs bare pg_basebackup and pgBackRest",
        facts["machine"],
        facts["pg_version"],
        body + benchlib.busy_section(facts["busy"]),
    )
    return 0


# -- the report ------------------------------------------------------------------------------------


def _med(runs: list[dict[str, Any]], key: str) -> float:
    return median([r[key] for r in runs])


def report(
    db_size: int,
    policy: Any,
    runs: dict[str, list[dict[str, Any]]],
    pgbackrest: PgBackRestSide,
    args: argparse.Namespace,
) -> str:
    bare, pipe, rest = runs["bare"], runs["pipeline"], runs["pgbackrest"]
    bare_wall, pipe_wall = _med(bare, "wall"), _med(pipe, "wall")
    cluster = _med(pipe, "cluster")
    settings = policy.base_backup
    rows = [
        ["database size (pg_database_size of the HMS database)", fmt_mb(db_size)],
        ["cluster size (what pg_basebackup copies, as the preflight measures it)", fmt_mb(cluster)],
        [
            "bare `pg_basebackup -Ft -X stream` wall",
            f"{bare_wall:.1f} s ({cluster / MB / bare_wall:.1f} MB/s of cluster)",
        ],
        ["pipeline wall (take_base_backup)", f"{pipe_wall:.1f} s ({cluster / MB / pipe_wall:.1f} MB/s of cluster)"],
        ["**ratio pipeline / bare**", f"**{pipe_wall / bare_wall:.2f}**"],
        [
            "ratio pipeline's pg_basebackup step / bare",
            f"{median([r['steps']['pg_basebackup'] for r in pipe]) / bare_wall:.2f}",
        ],
    ]
    if rest:
        rest_wall = _med(rest, "wall")
        rows += [
            ["pgBackRest full backup wall", f"{rest_wall:.1f} s ({cluster / MB / rest_wall:.1f} MB/s of cluster)"],
            ["**ratio pipeline / pgBackRest**", f"**{pipe_wall / rest_wall:.2f}**"],
            ["ratio pgBackRest / bare", f"{rest_wall / bare_wall:.2f}"],
        ]
    else:
        rows.append(["pgBackRest full backup", f"not set up here: {pgbackrest.missing}"])
    rows += [
        ["bare output on disk (plain tars)", f"{fmt_mb(_med(bare, 'size'))} (pg_wal.tar {fmt_mb(_med(bare, 'wal'))})"],
        [
            "pipeline stored in S3 (zstd + gpg)",
            f"{fmt_mb(_med(pipe, 'size'))} (plain {fmt_mb(_med(pipe, 'plain'))}; "
            f"pg_wal.tar {fmt_mb(_med(pipe, 'wal'))} stored, {fmt_mb(_med(pipe, 'wal_plain'))} plain)",
        ],
    ]
    if rest:
        rows.append(
            [
                "pgBackRest repository on disk (zstd + aes-256-cbc, no WAL)",
                f"{fmt_mb(_med(rest, 'size'))} (backup of {fmt_mb(_med(rest, 'plain'))} as pgBackRest counts it)",
            ]
        )

    lines = [
        f"Command: `{' '.join(['bench/base_backup_vs_pg_basebackup.py', *sys.argv[1:]])}`; {args.rounds} alternating round(s), medians below.",
        f"Pipeline: policy base_backup zstd -{settings.zstd_level} -T{settings.zstd_threads}, gpg public key (AES256), "
        f"read-back {'sha256' if policy.store.verify_readback else 'size only'}, store moto S3 (part size {policy.store.part_size_mib} MiB).",
        "Bare: `pg_basebackup -D <dir> -Ft -X stream --checkpoint=fast` as hms_replica, to local disk, no compression.",
    ]
    if rest and pgbackrest.tool is not None:
        shown = ", ".join(f"{k}={pgbackrest.tool.settings[k]}" for k in PGBACKREST_REPORTED)
        lines.append(
            f"pgBackRest: `pgbackrest --stanza={STANZA} backup --type=full` as the server's OS user, local repository, {shown}. "
            "With archive-check=n its set holds no WAL (archive-copy needs the archive check); the other two carry pg_wal.tar."
        )
    lines += ["", "## Result", "", markdown_table(["figure", "value"], rows)]
    lines += ["", "## Every variant of the pipeline (medians)", "", _variants_table(runs, bare_wall, cluster)]
    lines += [
        "",
        "## Pipeline steps (medians, as take_base_backup times them)",
        "",
        markdown_table(
            ["step", "s", "share of the pipeline wall"],
            [
                [
                    label,
                    f"{median([r['steps'][name] for r in pipe]):.1f}",
                    f"{100 * median([r['steps'][name] for r in pipe]) / pipe_wall:.0f}%",
                ]
                for name, label in PIPELINE_STEPS
            ],
        ),
    ]
    lines += ["", "## Every run", "", _every_run(runs)]
    lines += ["", "## Where the CPU went (last round; 2 cores = 2.0 CPU-s per wall second)", ""]
    titles = [(v.side, f"Pipeline, {v.described}") for v in VARIANTS]
    for side, title in (("bare", "Bare pg_basebackup"), *titles, ("pgbackrest", "pgBackRest")):
        if runs[side]:
            last = runs[side][-1]
            lines += [
                f"{title}:",
                "",
                benchlib.cpu_table(benchlib.relabel_cpu(last["cpu"], CPU_LABELS), last["wall"]),
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def _variants_table(runs: dict[str, list[dict[str, Any]]], bare_wall: float, cluster: float) -> str:
    rest_wall = _med(runs["pgbackrest"], "wall") if runs["pgbackrest"] else None
    rows = []
    for variant in VARIANTS:
        wall = _med(runs[variant.side], "wall")
        rows.append(
            [
                variant.described,
                f"{wall:.1f}",
                f"{wall / bare_wall:.2f}",
                f"{wall / rest_wall:.2f}" if rest_wall else "-",
                f"{fmt_mb(_med(runs[variant.side], 'staged_peak'))} ({_med(runs[variant.side], 'staged_peak') / cluster:.2f} x cluster)",
            ]
        )
    return markdown_table(["variant", "wall s", "/ bare", "/ pgBackRest", "staged on the worker at most"], rows)


def _every_run(runs: dict[str, list[dict[str, Any]]]) -> str:
    rows: list[list[Any]] = []
    where_stored = [(v.side, "in S3" if v.store == "s3" else "in the file store") for v in VARIANTS]
    for side, where in (("bare", "on disk"), *where_stored, ("pgbackrest", "in the repo")):
        for i, r in enumerate(runs[side], 1):
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items()) if "steps" in r else ""
            rows.append([i, side, f"{r['wall']:.1f}", steps, f"{fmt_mb(r['size'])} {where}", *benchlib.cpu_cells(r)])
    rows.sort(key=lambda row: row[0])
    return markdown_table(
        ["round", "side", "wall s", "pipeline steps s", "output", "our CPU s", "CPU s of other work"], rows
    )


if __name__ == "__main__":
    sys.exit(main())
