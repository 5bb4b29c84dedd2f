"""`make check-policy`: check a policy against the live database before its first backup.

    python -m hms_dr.tasks.check_policy [--policy FILE] [--dsn DSN] [--replication-dsn DSN] [--once]

Prints one line per finding (OK, WARN or PROBLEM, with the fix) and exits 1 when any is a
PROBLEM. Logins come from the policy's Airflow Connections (cluster.connection_id and
cluster.replication_connection_id, as the tasks read them: AIRFLOW_CONN_* or a secrets
backend), or from a libpq DSN or URL given here, for use before Airflow is set up. It lives
in hms_dr.tasks because it reads Airflow Connections; the checks are the engine's
(hms_dr.policy_check).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hms_dr.errors import HmsDrError
from hms_dr.pgtools import ConnectionInfo
from hms_dr.policy import Policy, load_policy, policy_path
from hms_dr.policy_check import Finding, Verdict, check_policy_against, has_problems

EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2


def connection_from_dsn(dsn: str, default_database: str) -> ConnectionInfo:
    """A libpq key=value string or postgresql:// URL as ConnectionInfo; what it leaves out takes
    libpq's defaults (the policy's database, the OS user, local port 5432). A password it lacks
    is still read by libpq from PGPASSWORD or ~/.pgpass."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = {key: str(value) for key, value in conninfo_to_dict(dsn).items() if value is not None}
    except Exception as exc:  # psycopg.ProgrammingError: one line, the DSN itself may hold a password
        raise HmsDrError(f"--dsn is not a libpq connection string or URL: {type(exc).__name__}") from None
    return ConnectionInfo(
        host=parts.get("host", "localhost"),
        port=int(parts.get("port", 5432)),
        user=parts.get("user", getpass.getuser()),
        dbname=parts.get("dbname", default_database),
        password=parts.get("password"),
        sslmode=parts.get("sslmode"),
    )


def _logins(policy: Policy, args: argparse.Namespace) -> tuple[ConnectionInfo, ConnectionInfo | None]:
    if args.dsn:
        replication = (
            connection_from_dsn(args.replication_dsn, policy.cluster.database) if args.replication_dsn else None
        )
        return connection_from_dsn(args.dsn, policy.cluster.database), replication
    from hms_dr.tasks.connections import database_connection  # imports Airflow: only when its Connections are used

    backup = database_connection(policy.cluster.connection_id, policy.cluster.database)
    try:
        replication = database_connection(policy.cluster.replication_connection_id, policy.cluster.database)
    except HmsDrError:
        replication = None  # reported as a WARN by the check
    if args.replication_dsn:
        replication = connection_from_dsn(args.replication_dsn, policy.cluster.database)
    return backup, replication


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hms_dr.tasks.check_policy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", type=Path, help=f"the policy file (default: $HMS_DR_POLICY or {policy_path()})")
    parser.add_argument(
        "--dsn", help="the backup role's login as a libpq DSN or URL, instead of the policy's Airflow Connection"
    )
    parser.add_argument("--replication-dsn", help="the replication role's login (base backups), likewise")
    parser.add_argument(
        "--once", action="store_true", help="read each baseline view once (skip the fingerprint under a second plan)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        policy = load_policy(args.policy)
        backup, replication = _logins(policy, args)
        findings = check_policy_against(policy, backup, replication=replication, run_views_twice=not args.once)
    except HmsDrError as exc:
        sys.stdout.write(Finding(Verdict.PROBLEM, "check-policy", exc.message, exc.hint).line() + "\n")
        return EXIT_UNUSABLE
    for finding in findings:
        sys.stdout.write(finding.line() + "\n")
    counts = {verdict: sum(f.verdict is verdict for f in findings) for verdict in Verdict}
    sys.stdout.write(
        f"check-policy {policy.source}: {counts[Verdict.OK]} ok, {counts[Verdict.WARN]} warning(s), "
        f"{counts[Verdict.PROBLEM]} problem(s)\n"
    )
    return EXIT_PROBLEMS if has_problems(findings) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
