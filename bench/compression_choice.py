#!/usr/bin/env python3
"""Which compression should the policy default to for the whole-database dump?

On the bench database (the sandbox in <repo>/.sandbox-bench, reused from
daily_backup_vs_pg_dump.py, or created at --scale-mb), alternating rounds of

    pg_dump -Fc -Z6 (default gzip) | gpg        pg_dump -Fc -Z1 | gpg
    pg_dump -Fc -Z0 | zstd -1 -T0 | gpg         pg_dump -Fc -Z0 | zstd -3 -T0 | gpg
    pg_dump -Fc -Z0 | zstd -6 -T0 | gpg         pg_dump -Fc -Z0 | gpg   (none)

where gpg is ``gpg --encrypt --compress-algo none`` to the sandbox key (the engine's own argv),
so the encryption cost is included, and the output is counted by ``wc -c``. Prints wall time,
output size, ratio and MB/s per option and the suggested default: the fastest option whose
ratio is within 10% of the best ratio among the fast options (wall ≤ 1.5 × the fastest).
Writes bench/results/<date>-compression-choice.md.

    PYTHONPATH=plugins .venv/bin/python bench/compression_choice.py [--rounds 2] [--keep]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import MB, CpuSampler, fmt_mb, markdown_table, median

NAME = "compression-choice"
FAST_FACTOR = 1.5  # an option is "fast" when its wall time is at most this times the fastest one's
RATIO_TOLERANCE = 0.10  # ... and acceptable when its ratio is within 10% of the best fast ratio
TIE = 0.05  # acceptable options within 5% of the fastest acceptable wall are a tie: the least CPU wins


@dataclass(frozen=True)
class Option:
    name: str
    pg_dump_level: int
    zstd_level: int | None  # None: no external compressor
    policy: str  # how the policy would say it

    def argv_chain(self, pg_dump: list[str], gpg: list[str]) -> list[list[str]]:
        chain = [pg_dump]
        if self.zstd_level is not None:
            # The engine's compression_stage argv (zstd -q -c -<level> -T<threads>).
            chain.append(["zstd", "-q", "-c", f"-{self.zstd_level}", "-T0"])
        return [*chain, gpg]


OPTIONS = (
    Option("pg_dump -Z6 (gzip default)", 6, None, "method: gzip, level: 6"),
    Option("pg_dump -Z1 (gzip)", 1, None, "method: gzip, level: 1"),
    Option("-Z0 | zstd -1 -T0", 0, 1, "method: zstd, level: 1, threads: 0"),
    Option("-Z0 | zstd -3 -T0", 0, 3, "method: zstd, level: 3, threads: 0"),
    Option("-Z0 | zstd -6 -T0", 0, 6, "method: zstd, level: 6, threads: 0"),
    Option("-Z0 (none)", 0, None, "method: none"),
)


def run_option(option: Option, conn: Any, home: Path, key: Any, sampler: CpuSampler) -> dict[str, Any]:
    from hms_dr.crypto import encrypt_stage
    from hms_dr.database import client_tools
    from hms_dr.pgtools import pg_dump_argv, tool_env

    pg_dump = pg_dump_argv(client_tools(conn), snapshot=None, archive_format="c", compress_level=option.pg_dump_level)
    chain = option.argv_chain(pg_dump, list(encrypt_stage(home, key).argv))
    script = " | ".join(shlex.join(argv) for argv in chain) + " | wc -c"

    def run() -> int:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script], env=tool_env(conn), check=True, capture_output=True, text=True
        )
        return int(done.stdout.strip())

    wall, size, cpu = benchlib.measure(run, sampler)
    return {
        "wall": wall,
        "size": size,
        "cpu": benchlib.own_cpu(cpu),
        "other_cpu": cpu.get(benchlib.OTHER_LABEL, 0.0),
        "cpu_detail": cpu,
        "script": script,
    }


def choose(summary: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    fastest = min(s["wall"] for s in summary)
    fast = [s for s in summary if s["wall"] <= FAST_FACTOR * fastest]
    best_ratio = max(s["ratio"] for s in fast)
    acceptable = [s for s in fast if s["ratio"] >= (1 - RATIO_TOLERANCE) * best_ratio]
    quickest = min(s["wall"] for s in acceptable)
    tied = [s for s in acceptable if s["wall"] <= (1 + TIE) * quickest]
    # On 2 cores shared with PostgreSQL, CPU not spent compressing is CPU the server gets.
    return min(tied, key=lambda s: (s["cpu"], -s["ratio"])), fast, best_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale-mb", type=float, default=1100, help="only used if the bench sandbox does not exist yet"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the bench sandbox running")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    benchlib.setup_logging(args.verbose)

    from hms_dr.crypto import check_encryption_key, gpg_home
    from hms_dr.policy import load_policy

    sandbox = benchlib.start_bench_sandbox(args.scale_mb)
    try:
        conn = benchlib.backup_connection(sandbox)
        policy = load_policy(sandbox.paths.policy_file)
        db_size = benchlib.database_size(conn)
        pg_version = benchlib.server_version(conn)
        machine = benchlib.machine_info()
        print(f"database {sandbox.database}: pg_database_size = {fmt_mb(db_size)}")
        busy = benchlib.busy_other_processes()
        if busy:
            print("WARNING: other processes are busy on this shared machine: " + "; ".join(busy))
        sampler_args = {"moto_pid": None, "postmaster_pid": sandbox.cluster().postmaster_pid()}
        runs: dict[str, list[dict[str, Any]]] = {o.name: [] for o in OPTIONS}
        key = benchlib.encryption_key(sandbox)
        with gpg_home(policy.staging.dir) as home:
            check_encryption_key(home, key)
            for round_no in range(1, args.rounds + 1):
                # Alternate the order between rounds so no option always runs on the warmest cache.
                order = OPTIONS if round_no % 2 else tuple(reversed(OPTIONS))
                for option in order:
                    run = run_option(option, conn, home, key, CpuSampler(**sampler_args))
                    runs[option.name].append(run)
                    print(
                        f"round {round_no}: {option.name:28s} {run['wall']:6.1f} s  {fmt_mb(run['size']):>12s}  "
                        f"{db_size / MB / run['wall']:6.1f} MB/s  CPU {run['cpu']:.0f} s (+{run['other_cpu']:.0f} s other work)",
                        flush=True,
                    )
    finally:
        if args.keep:
            print(f"--keep: the bench sandbox keeps running in {benchlib.BENCH_STATE_DIR}")
        else:
            benchlib.stop_bench_sandbox()

    plain = median([r["size"] for r in runs[OPTIONS[-1].name]])  # the uncompressed archive (+ gpg framing)
    summary: list[dict[str, Any]] = []
    for option in OPTIONS:
        rs = runs[option.name]
        wall = median([r["wall"] for r in rs])
        size = median([r["size"] for r in rs])
        summary.append(
            {
                "option": option,
                "wall": wall,
                "size": size,
                "ratio": plain / size,
                "cpu": median([r["cpu"] for r in rs]),
                "other_cpu": median([r["other_cpu"] for r in rs]),
                "db_mbps": db_size / MB / wall,
                "plain_mbps": plain / MB / wall,
            }
        )
    chosen, fast, best_ratio = choose(summary)
    current = (
        next(
            s
            for s in summary
            if s["option"].zstd_level == policy.compression.level and policy.compression.method.value == "zstd"
        )
        if policy.compression.method.value == "zstd"
        else None
    )

    table = markdown_table(
        [
            "option (each piped through gpg --encrypt)",
            "wall s",
            "output",
            "ratio vs none",
            "DB MB/s",
            "plain-archive MB/s",
            "CPU s (ours)",
            "CPU s taken by other work",
        ],
        [
            [
                s["option"].name + (" ← policy default" if s is current else ""),
                f"{s['wall']:.1f}",
                fmt_mb(s["size"]),
                f"{s['ratio']:.2f}",
                f"{s['db_mbps']:.1f}",
                f"{s['plain_mbps']:.1f}",
                f"{s['cpu']:.0f}",
                f"{s['other_cpu']:.0f}",
            ]
            for s in summary
        ],
    )
    rule = (
        f"Rule: fast = wall ≤ {FAST_FACTOR} × the fastest option ({', '.join(s['option'].name for s in fast)}); "
        f"best ratio among them {best_ratio:.2f}; choice = the fastest fast option with ratio ≥ {1 - RATIO_TOLERANCE:.0%} of that, "
        f"walls within {TIE:.0%} of each other counting as a tie that the lower CPU (ours) wins."
    )
    verdict = f"**Suggested policy default: {chosen['option'].name} (`compression: {{{chosen['option'].policy}}}`)**"
    if current is not None:
        verdict += (
            " — the current default."
            if chosen is current
            else f" — the current default (zstd -{policy.compression.level}) takes {current['wall']:.1f} s, {current['cpu']:.0f} CPU s "
            f"for ratio {current['ratio']:.2f}, vs {chosen['wall']:.1f} s, {chosen['cpu']:.0f} CPU s for ratio {chosen['ratio']:.2f}."
        )
    body = "\n".join(
        [
            f"Command: `{' '.join(['bench/compression_choice.py', *sys.argv[1:]])}`; {args.rounds} round(s), order reversed every other round; medians.",
            f"Database: {sandbox.database}, pg_database_size {fmt_mb(db_size)}; plain `-Fc -Z0` archive (through gpg) {fmt_mb(plain)}.",
            "Every option: `pg_dump -Fc --blobs -Z<n> [| zstd -q -c -<l> -T0] | gpg --encrypt --compress-algo none --cipher-algo AES256 "
            "--trust-model always --recipient <sandbox key> | wc -c`, as hms_backup, each process measured.",
            "",
            "## Result",
            "",
            table,
            "",
            rule,
            "",
            verdict,
            "",
            "## Every run",
            "",
            markdown_table(
                ["option", "walls s", "sizes"],
                [
                    [
                        o.name,
                        ", ".join(f"{r['wall']:.1f}" for r in runs[o.name]),
                        ", ".join(fmt_mb(r["size"]) for r in runs[o.name]),
                    ]
                    for o in OPTIONS
                ],
            ),
            "",
            "CPU per process (last run of each option, CPU s):",
            "",
            markdown_table(
                ["option", "CPU by process"],
                [
                    [o.name, "; ".join(f"{k} {v:.1f}" for k, v in runs[o.name][-1]["cpu_detail"].items())]
                    for o in OPTIONS
                ],
            ),
        ]
    )
    print()
    print(body)
    extra = "\n## Other busy processes at start\n\n" + "\n".join(f"- {b}" for b in busy) + "\n" if busy else ""
    benchlib.write_results(
        NAME, "Compression choice for the whole-database dump", machine, pg_version, body + "\n" + extra
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
