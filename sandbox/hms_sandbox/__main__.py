"""Command line of the sandbox: ``python -m hms_sandbox start|stop|status|env`` (PYTHONPATH=plugins:sandbox).

``status`` exits 0 when every service runs and 3 otherwise; any failure exits 1 with a one-line reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hms_dr.errors import HmsDrError
from hms_sandbox.lifecycle import describe_sandbox, sandbox_status, start_sandbox, stop_sandbox
from hms_sandbox.state import SandboxPaths

log = logging.getLogger("hms_sandbox")

EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per action, ``--state-dir`` on each."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir", type=Path, default=None, help="sandbox directory (default: $HMS_DR_SANDBOX or <repo>/.sandbox)"
    )
    parser = argparse.ArgumentParser(
        prog="python -m hms_sandbox", description="Local PostgreSQL + S3 + GPG sandbox for hms-dr."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", parents=[common], help="create what is missing and start what is down")
    start.add_argument(
        "--scale-mb", type=float, default=50, help="size of the generated HMS data on first start (default 50)"
    )
    commands.add_parser("stop", parents=[common], help="stop PostgreSQL, moto and gpg agents; keep the data")
    commands.add_parser("status", parents=[common], help="one line per component")
    commands.add_parser("env", parents=[common], help="print the path of airflow.env (source it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sandbox command; return the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "start":
            if not args.scale_mb > 0:
                log.error("--scale-mb must be positive, got %s", args.scale_mb)
                return EXIT_FAILED
            sandbox = start_sandbox(args.state_dir, scale_mb=args.scale_mb)
            sys.stdout.write("\n".join(describe_sandbox(sandbox)) + "\n")
        elif args.command == "stop":
            stop_sandbox(args.state_dir)
        elif args.command == "status":
            all_up, lines = sandbox_status(args.state_dir)
            sys.stdout.write("\n".join(lines) + "\n")
            return 0 if all_up else EXIT_NOT_RUNNING
        elif args.command == "env":
            env_file = SandboxPaths.at(args.state_dir).env_file
            if not env_file.exists():
                log.error("%s does not exist yet: run `python -m hms_sandbox start` first", env_file)
                return EXIT_FAILED
            sys.stdout.write(f"{env_file}\n")
    except HmsDrError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
