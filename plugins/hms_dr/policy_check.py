"""The policy check: does a policy fit a live database, before its first backup?

One finding per question, each OK, WARN or PROBLEM with the fix (often the exact GRANT): the
connection; the backup role's reach over every table and large object in scope; every relation
the policy names; its baseline views' determinism; its smoke queries (run READ ONLY, rolled
back); the WAL archiving and base backup settings; the cluster name. The checks the backups make
themselves (hms_dr.preflight, hms_dr.physical.preflight) are called, not copied, so this check
and the nightly run cannot disagree. Nothing is written to the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from hms_dr import baseline, sqlfiles
from hms_dr.database import connect, first_line
from hms_dr.errors import HmsDrError
from hms_dr.pgtools import ConnectionInfo
from hms_dr.physical.incremental import SUMMARIZE_WAL_HINT, check_incremental_source
from hms_dr.physical.preflight import (
    SourceCluster,
    copy_method_for,
    judge_source,
    read_source_cluster,
    source_tools,
    staging_space_needed,
    streamed_space_needed,
)
from hms_dr.policy import Policy
from hms_dr.policy.base_backup import BaseBackupMethod, BaseBackupPolicy
from hms_dr.preflight import (
    MIB,
    check_large_objects_readable,
    check_relations_readable,
    free_space_of,
    staging_needed_bytes,
)
from hms_dr.units import human_bytes
from hms_dr.view_determinism import REFUSAL_HINT, fingerprints_under_two_plans, refusal_message, static_reasons

HMS_CLUSTER_NAME = "hms-primary"
HMS_DATABASE = "hospital_management"
SMOKE_QUERY_TIMEOUT = "60s"
ARCHIVE_SCRIPT = "archive_wal.sh"


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    PROBLEM = "PROBLEM"


@dataclass(frozen=True)
class Finding:
    """One answer of the policy check: what was checked, what was found, and the fix."""

    verdict: Verdict
    subject: str
    text: str
    fix: str | None = None

    def line(self) -> str:
        return f"{self.verdict.value:<7} {self.subject}: {self.text}" + (f" | fix: {self.fix}" if self.fix else "")


def _ok(subject: str, text: str) -> Finding:
    return Finding(Verdict.OK, subject, text)


def _from_error(subject: str, exc: HmsDrError, verdict: Verdict = Verdict.PROBLEM) -> Finding:
    return Finding(verdict, subject, exc.message, exc.hint)


def check_policy_against(
    policy: Policy,
    conn: ConnectionInfo,
    *,
    replication: ConnectionInfo | None = None,
    run_views_twice: bool = True,
) -> list[Finding]:
    """Every finding for ``policy`` on the database at ``conn`` (the backup role's login).

    :param replication: the replication role's login (base backups); None leaves it unchecked.
    :param run_views_twice: also fingerprint each baseline view under two plans (reads it twice).
    """
    findings = [*_cluster_name_findings(policy, conn)]
    try:
        with connect(conn) as connection:
            findings.extend(_database_findings(policy, connection, conn, run_views_twice))
    except HmsDrError as exc:
        findings.append(_from_error("connection", exc))
        if not exc.hint:
            findings[-1] = Finding(
                Verdict.PROBLEM,
                "connection",
                exc.message,
                "check host, port, user and password; the role needs LOGIN and CONNECT on the database",
            )
        return findings
    findings.extend(_base_backup_findings(replication, policy.base_backup))
    return findings


def _cluster_name_findings(policy: Policy, conn: ConnectionInfo) -> list[Finding]:
    found = []
    if policy.cluster.name == HMS_CLUSTER_NAME and policy.cluster.database != HMS_DATABASE:
        found.append(
            Finding(
                Verdict.WARN,
                "cluster.name",
                f"is still the HMS default {HMS_CLUSTER_NAME!r} for database "
                f"{policy.cluster.database!r}: new sets would land in the hospital's folders of the store",
                "set cluster.name in the policy to a name of this database's own (e.g. its host and database)",
            )
        )
    else:
        found.append(_ok("cluster.name", f"sets go to {policy.cluster.name}/ in the stores"))
    if conn.dbname != policy.cluster.database:
        found.append(
            Finding(
                Verdict.WARN,
                "cluster.database",
                f"the policy protects {policy.cluster.database!r}, but this check connected to {conn.dbname!r}",
                "check cluster.database, or connect to that database",
            )
        )
    return found


def _database_findings(policy: Policy, connection: Any, conn: ConnectionInfo, run_views_twice: bool) -> list[Finding]:
    found: list[Finding] = []
    with connection.cursor() as cursor:
        cursor.execute(sqlfiles.text("server_identity"))
        _, server_version, in_recovery, database, size_bytes, _ = cursor.fetchone()
        cursor.execute(sqlfiles.text("backup_role_attributes"))
        role, is_superuser, _, reads_all_data, reads_settings, reads_stats = cursor.fetchone()
        found.append(
            _ok(
                "connection",
                f"{role}@{conn.host}:{conn.port}/{database}, PostgreSQL {server_version}"
                f"{' (a standby)' if in_recovery else ''}, {size_bytes / (1 << 20):,.0f} MiB",
            )
        )
        found.append(dump_format_finding(policy, int(size_bytes)))
        if is_superuser:
            found.append(
                Finding(Verdict.WARN, "backup role", f"{role} is a superuser", "log in as a dedicated read-only role")
            )
        missing = [
            name
            for name, held in (("pg_read_all_settings", reads_settings), ("pg_read_all_stats", reads_stats))
            if not held
        ]
        if missing and not is_superuser:
            found.append(
                Finding(
                    Verdict.WARN,
                    "backup role",
                    f"{role} lacks {', '.join(missing)} (archiver status, settings)",
                    f"GRANT {', '.join(missing)} TO {role};",
                )
            )
        found.append(
            _reach_finding(
                "tables in scope",
                lambda: check_relations_readable(cursor, role, list(policy.logical_backup.schemas)),
                f"{role} reads every table, sequence and materialized view in scope"
                f"{' (pg_read_all_data)' if reads_all_data else ''}",
            )
        )
        found.append(_reach_finding("large objects", lambda: _large_objects_text(cursor, role), ""))
        views = _resolve_names(cursor, policy, role, found)
        found.extend(_view_findings(connection, cursor, role, views, run_views_twice))
        found.extend(_wal_findings(cursor, policy))
    found.extend(_smoke_query_findings(connection, policy))
    return found


def dump_format_finding(policy: Policy, database_size_bytes: int) -> Finding:
    """The whole-database dump's format for a database of this size, and, for a directory dump,
    whether the staging disk has room for it (preflight refuses the run otherwise)."""
    logical = policy.logical_backup
    text = logical.describe_format_choice(database_size_bytes)
    needed = policy.staging.min_free_mib * MIB + staging_needed_bytes(
        logical.dump_format_for(database_size_bytes), database_size_bytes
    )
    free = free_space_of(policy.staging.dir)
    if free is not None and free < needed:
        return Finding(
            Verdict.WARN,
            "logical_backup.format",
            f"{text}; staging.dir {policy.staging.dir} has {free / MIB:,.0f} MiB free on this host,"
            f" the dump needs {needed / MIB:,.0f} MiB there",
            "give the worker's staging.dir room for the database's size, or set logical_backup.format: custom",
        )
    return _ok("logical_backup.format", text)


def _reach_finding(subject: str, check: Any, ok_text: str) -> Finding:
    try:
        text = check()
    except HmsDrError as exc:
        return _from_error(subject, exc)
    return _ok(subject, text or ok_text)


def _large_objects_text(cursor: Any, role: str) -> str:
    count = check_large_objects_readable(cursor)
    return f"{role} reads all {count} large object(s)" if count else "none in the database"


def _resolve_names(cursor: Any, policy: Policy, role: str, found: list[Finding]) -> list[tuple[str, str, str]]:
    """Resolve each name the policy gives (baseline.resolve_relations); the views as (policy name, schema, name)."""
    views = []
    named = [("logical_backup.data_only_tables", "data-only table", n) for n in policy.logical_backup.data_only_tables]
    named += [("logical_backup.baseline_views", "baseline view", n) for n in policy.logical_backup.baseline_views]
    for key, purpose, name in named:
        try:
            [(schema, relation)] = baseline.resolve_relations(cursor, [name], purpose=purpose)
        except HmsDrError as exc:
            found.append(
                Finding(
                    Verdict.PROBLEM,
                    key,
                    exc.message,
                    exc.hint
                    or "correct the name (schema-qualified, double-quoted if it is not lower case) or remove it",
                )
            )
            continue
        except psycopg.Error as exc:  # e.g. no USAGE on its schema: the backup would stop there too
            found.append(
                Finding(
                    Verdict.PROBLEM,
                    key,
                    f"{purpose} {name!r} cannot be looked up: {first_line(exc)} "
                    "(pg_read_all_data includes USAGE on every schema)",
                    f"GRANT pg_read_all_data TO {role};",
                )
            )
            continue
        found.append(_ok(key, f"{name} is {schema}.{relation}"))
        if key.endswith("baseline_views"):
            views.append((name, schema, relation))
    return views


def _view_findings(
    connection: Any, cursor: Any, role: str, views: Sequence[tuple[str, str, str]], run_views_twice: bool
) -> list[Finding]:
    found = []
    unfixed = static_reasons(cursor, [name for name, _, _ in views])
    for name, schema, relation in views:
        subject = f"baseline view {name}"
        if name in unfixed:
            found.append(Finding(Verdict.PROBLEM, subject, refusal_message(name, unfixed[name]), REFUSAL_HINT))
        elif run_views_twice:
            try:
                first, second = fingerprints_under_two_plans(connection, schema, relation)
            except psycopg.Error as exc:
                found.append(
                    Finding(
                        Verdict.PROBLEM,
                        subject,
                        f"cannot be read: {first_line(exc)}",
                        f"GRANT pg_read_all_data TO {role};",
                    )
                )
                continue
            if first != second:
                found.append(
                    Finding(
                        Verdict.PROBLEM,
                        subject,
                        "its fingerprint differed when read twice in one snapshot under "
                        "other plan settings: its rows depend on the plan",
                        REFUSAL_HINT,
                    )
                )
            else:
                found.append(
                    _ok(subject, "rows fixed by the data (query tree, and the same fingerprint under two plans)")
                )
        else:
            found.append(_ok(subject, "rows fixed by the data (query tree)"))
    return found


def _smoke_query_findings(connection: Any, policy: Policy) -> list[Finding]:
    if not policy.restore_test.smoke_queries:
        return [
            Finding(
                Verdict.WARN,
                "restore_test.smoke_queries",
                "none: restore tests run no query of the application's own",
                "list a few of its read-only queries as {name, sql}",
            )
        ]
    found = []
    for query in policy.restore_test.smoke_queries:
        subject = f"smoke query {query.name!r}"
        try:
            # Read only and rolled back whatever the statement is: the policy's lexical check is not the guard.
            with connection.transaction(force_rollback=True), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", (SMOKE_QUERY_TIMEOUT,))
                cursor.execute(query.sql.encode())  # bytes: the operator's SQL, run as written (no % placeholders)
                rows = len(cursor.fetchall()) if cursor.description else 0
        except psycopg.Error as exc:
            found.append(
                Finding(
                    Verdict.PROBLEM,
                    subject,
                    f"fails here: {first_line(exc)}",
                    "correct its sql in the policy; it runs on every restored copy, where it would fail the same way",
                )
            )
            continue
        found.append(_ok(subject, f"ran read-only and returned {rows} row(s)"))
    return found


def _wal_findings(cursor: Any, policy: Policy) -> list[Finding]:
    cursor.execute(sqlfiles.text("wal/archive_settings"))
    settings = dict(cursor.fetchall())
    found = []
    conf = "include include/postgres/postgresql.hms.conf from postgresql.conf and restart the server"
    if settings.get("wal_level") == "minimal":
        found.append(
            Finding(
                Verdict.PROBLEM,
                "wal_level",
                "minimal: neither archiving nor base backups work",
                f"wal_level = replica: {conf}",
            )
        )
    else:
        found.append(_ok("wal_level", str(settings.get("wal_level"))))
    if settings.get("archive_mode") not in ("on", "always"):
        found.append(
            Finding(
                Verdict.PROBLEM,
                "archive_mode",
                f"{settings.get('archive_mode')}: no WAL is archived, so no "
                "point-in-time recovery and no physical drill",
                f"archive_mode = on: {conf}",
            )
        )
    else:
        found.append(_ok("archive_mode", str(settings.get("archive_mode"))))
        found.append(_archive_command_finding(settings, policy))
        found.extend(_archiver_findings(cursor))
    version = int(settings.get("server_version_num") or 0)
    if version >= 170000:
        found.append(
            _ok("summarize_wal", f"{settings.get('summarize_wal')}: not needed, hms-dr takes full base backups only")
        )
    return found


def _archive_command_finding(settings: dict[str, str], policy: Policy) -> Finding:
    command, library = settings.get("archive_command"), settings.get("archive_library")
    spool = str(policy.wal.spool_dir)
    expected = f'archive_command = \'<repo>/include/postgres/{ARCHIVE_SCRIPT} "%p" "{spool}"\''
    if command is None:
        return Finding(
            Verdict.WARN,
            "archive_command",
            "cannot be read by this role",
            "GRANT pg_read_all_settings TO the backup role",
        )
    if library:
        return Finding(
            Verdict.PROBLEM,
            "archive_command",
            f"archive_library {library} is set: hms_wal_archive ships only what {ARCHIVE_SCRIPT} spools to {spool}",
            f"unset archive_library; {expected}",
        )
    if not command.strip() or command.strip() == "(disabled)":
        return Finding(
            Verdict.PROBLEM,
            "archive_command",
            "empty: archive_mode is on but nothing is archived (WAL piles up)",
            expected,
        )
    if spool not in command:
        return Finding(
            Verdict.WARN,
            "archive_command",
            f"{command!r} does not name wal.spool_dir {spool}: hms_wal_archive ships only that spool",
            expected,
        )
    return _ok("archive_command", f"spools to {spool}")


def _archiver_findings(cursor: Any) -> list[Finding]:
    cursor.execute(sqlfiles.text("wal/archiver_status"))
    archived, last_archived, archived_at, failed, last_failed, failed_at, _, _ = cursor.fetchone()
    if failed_at is not None and (archived_at is None or failed_at > archived_at):
        return [
            Finding(
                Verdict.PROBLEM,
                "WAL archiver",
                f"failing: {last_failed} failed at {failed_at:%Y-%m-%d %H:%M:%S %Z} ({failed} failure(s) in all)",
                "read the PostgreSQL log for archive_command's error",
            )
        ]
    return [_ok("WAL archiver", f"{archived} file(s) archived, newest {last_archived or '-'}")]


def _base_backup_findings(replication: ConnectionInfo | None, settings: BaseBackupPolicy) -> list[Finding]:
    if replication is None:
        return [
            Finding(
                Verdict.WARN,
                "base backups",
                "the replication role was not checked",
                "give its login too (--replication-dsn, or the policy's cluster.replication_connection_id)",
            )
        ]
    try:
        source = read_source_cluster(replication)
        where = f"{replication.host}:{replication.port}"
        judge_source(source, where=where)
        source_tools(source, where=where)
    except HmsDrError as exc:
        return [_from_error("base backups", exc)]
    checksums = "" if source.data_checksums else " (no data checksums: the drill cannot run pg_checksums)"
    return [
        _ok(
            "base backups",
            f"{source.role_name} may stream a base backup (wal_level {source.wal_level}, "
            f"max_wal_senders {source.max_wal_senders}){checksums}",
        ),
        method_finding(source, settings),
        incremental_finding(source, where=where, incremental=settings.incremental),
    ]


def method_finding(source: SourceCluster, settings: BaseBackupPolicy) -> Finding:
    """How the base backup will copy this cluster, and the staging space that takes."""
    method = copy_method_for(settings.method, source)
    subject = "base_backup.method"
    if method is BaseBackupMethod.STREAMED:
        needed = streamed_space_needed(settings.staging_limit_mb << 20, source)
        return _ok(
            subject,
            f"streamed: the cluster ({human_bytes(source.cluster_size_bytes)}) flows into the store; staging needs "
            f"{human_bytes(needed)} free (staging_limit_mb {settings.staging_limit_mb} + max_wal_size)",
        )
    needed = staging_space_needed(
        source.cluster_size_bytes, settings.staging_space_ratio, source.wal_segment_size_bytes
    )
    why = (
        f" (the cluster has {source.extra_tablespaces} tablespace(s) of its own: pg_basebackup streams only one)"
        if settings.method is BaseBackupMethod.STREAMED
        else ""
    )
    return _ok(subject, f"staged{why}: staging needs {human_bytes(needed)} free for the tars and the extracted copy")


def incremental_finding(source: SourceCluster, *, where: str, incremental: bool) -> Finding:
    """base_backup.incremental against the server: the same check the backup run makes."""
    subject = "base_backup.incremental"
    if not incremental:
        could = (
            f"; this server could take them ({SUMMARIZE_WAL_HINT.split(';')[0]} first if summarize_wal is off)"
            if source.summarize_wal is not None
            else ""
        )
        return _ok(subject, f"off: every base backup is a full one{could}")
    try:
        check_incremental_source(source, where=where, asked_by="the policy (base_backup.incremental: true)")
    except HmsDrError as exc:
        return _from_error(subject, exc)
    return _ok(subject, f"on: {where} runs PostgreSQL {source.server_version} with summarize_wal on")


def has_problems(findings: Sequence[Finding]) -> bool:
    return any(f.verdict is Verdict.PROBLEM for f in findings)
