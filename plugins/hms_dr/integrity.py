"""Integrity of the protected database (runbook scenario 3's detection): ``pg_amcheck``'s heap and
B-tree checks, run read-only on production, parsed into one finding per relation, and the
``hms_dr_restore`` request that would repair the tables the corrupt relations belong to.

Production-safe by construction: only ``verify_heapam`` and ``bt_index_check`` run (ACCESS SHARE
locks, the lock ordinary SELECTs take; never ``--parent-check``/``--rootdescend``, which take
SHARE locks that block writes, and never ``--install-missing``, a write); the session is
``default_transaction_read_only`` with a ``lock_timeout``, so the check never queues long behind
an ALTER TABLE (and never makes every query queue behind itself). The amcheck extension is a
one-time setup by a superuser (``include/sql/integrity/install_amcheck.sql``); without it the
check refuses with the command that installs it.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hms_dr import sqlfiles
from hms_dr.errors import CorruptionFound, IntegrityCheckIncomplete, PreflightFailed, ToolFailed
from hms_dr.names import spell_identifier, split_relation_key, sql_spelling
from hms_dr.pginstalls import PgInstall
from hms_dr.pgtools import ConnectionInfo, last_line, tool_env
from hms_dr.records import Record

if TYPE_CHECKING:
    from hms_dr.store import Store

log = logging.getLogger(__name__)

INTEGRITY_FOLDER = "integrity"
INSTALL_SQL = "include/sql/integrity/install_amcheck.sql"
REPAIR_DAG_ID = "hms_dr_restore"
MAX_MESSAGES_PER_RELATION = 5
MAX_OUTPUT_CHARS = 1 << 20
EXIT_CORRUPTION = 2  # pg_amcheck: a check reported a problem; 1 is its own failure (connection, no relations)

_HEADER = re.compile(
    r'^(?P<kind>heap table|btree index|toast table|relation) "(?P<name>[^"]+)"'
    r"(?:, block (?P<block>\d+))?(?:, offset (?P<offset>\d+))?(?:, attribute (?P<attribute>\d+))?:$"
)
_CHECKING = re.compile(r'^pg_amcheck: checking (?:heap table|btree index|toast table) "')
# Errors that say a relation could not be checked, not that it is damaged.
_NOT_CORRUPTION = re.compile(
    r"permission denied|canceling statement due to (lock|statement) timeout|could not obtain lock|deadlock detected"
    r"|out of memory|terminating connection|server closed the connection|could not connect",
    re.IGNORECASE,
)
_ERROR = re.compile(r"^(?:ERROR|FATAL|PANIC):\s+(?:(?P<sqlstate>[0-9A-Z]{5}):\s+)?(?P<message>.*)$")
# insufficient privilege, lock not available, query canceled (timeouts), deadlock, out of
# memory or resources, the connection lost or refused, the server shutting down.
_NOT_CORRUPTION_SQLSTATE_PREFIXES = ("42501", "55P03", "57014", "40P01", "53", "08", "57P")
_CATALOG_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True)
class Finding:
    """What pg_amcheck said about one relation: where, and its messages (first few)."""

    relation: str  # schema.name
    kind: str  # heap table | btree index | toast table
    messages: tuple[str, ...]
    locations: tuple[str, ...] = ()  # "block 5, offset 3" ...
    corruption: bool = True  # False: the relation could not be checked (permission, lock timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "kind": self.kind,
            "messages": list(self.messages),
            "locations": list(self.locations),
            "corruption": self.corruption,
        }


@dataclass(frozen=True)
class AmcheckResult:
    exit_code: int
    findings: tuple[Finding, ...]
    relations_checked: int
    argv: tuple[str, ...]
    seconds: float
    output: str = field(default="", repr=False)


def pg_amcheck_argv(pg: PgInstall, *, heapallindexed: bool, jobs: int, tables: Sequence[str] = ()) -> list[str]:
    """pg_amcheck of the database the environment names (PGDATABASE, see :func:`amcheck_env`):
    heap and B-tree checks with ACCESS SHARE locks only, verbose (every relation it checks is
    listed on stderr), never prompting for a password."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    argv = [pg.program("pg_amcheck"), "--no-password", "--verbose", f"--jobs={jobs}"]
    if heapallindexed:
        argv.append("--heapallindexed")
    argv += [f"--table={name}" for name in tables]
    return argv


def amcheck_env(conn: ConnectionInfo, *, lock_timeout_s: int) -> dict[str, str]:
    """The client environment: the connection, and a read-only session that gives up on a lock
    after ``lock_timeout_s`` rather than queue behind (and in front of) production's DDL."""
    env = tool_env(conn)
    env["PGOPTIONS"] = f"-c default_transaction_read_only=on -c lock_timeout={int(lock_timeout_s)}s"
    env["PGAPPNAME"] = "hms-dr-integrity-check"
    return env


def parse_pg_amcheck(stdout: str, database: str) -> list[Finding]:
    """pg_amcheck's report (stdout) as one Finding per relation, in the order first named.

    Each problem is a header line (``btree index "db.schema.name":`` or ``heap table
    "db.schema.name", block 5, offset 3:``) followed by indented lines: verify_heapam's messages,
    or the ERROR a check raised (with --verbose: its SQLSTATE, then LOCATION and the query).
    """
    order: list[str] = []
    kinds: dict[str, str] = {}
    messages: dict[str, list[tuple[str, str | None]]] = {}
    locations: dict[str, list[str]] = {}
    current: str | None = None
    in_query = False
    for raw in stdout.splitlines():
        match = _HEADER.match(raw.strip()) if not raw.startswith((" ", "\t")) else None
        if match:
            current, in_query = _relation_name(match.group("name"), database), False
            if current not in kinds:
                order.append(current)
                kinds[current] = match.group("kind")
                messages[current] = []
                locations[current] = []
            where = ", ".join(
                f"{label} {match.group(label)}"
                for label in ("block", "offset", "attribute")
                if match.group(label) is not None
            )
            if where and where not in locations[current]:
                locations[current].append(where)
            continue
        text = raw.strip()
        if current is None or not text or in_query:
            continue
        if text.startswith("query was:"):
            in_query = True  # the check's SQL follows, up to the next header
            continue
        if text.startswith(("DETAIL:", "HINT:", "CONTEXT:", "LOCATION:", "QUERY:")):
            continue
        error = _ERROR.match(text)
        messages[current].append((error.group("message"), error.group("sqlstate")) if error else (text, None))
    findings = []
    for name in order:
        said = messages[name] or [("pg_amcheck reported this relation without a message", None)]
        corruption = any(_is_corruption(message, sqlstate) for message, sqlstate in said)
        texts = tuple(dict.fromkeys(message for message, _ in said))[:MAX_MESSAGES_PER_RELATION]
        findings.append(Finding(name, kinds[name], texts, tuple(locations[name]), corruption))
    return findings


def _is_corruption(message: str, sqlstate: str | None) -> bool:
    """A message is corruption unless it says the check could not run (by SQLSTATE when
    pg_amcheck gave one, else by its words)."""
    if sqlstate is not None:
        return not sqlstate.startswith(_NOT_CORRUPTION_SQLSTATE_PREFIXES)
    return not _NOT_CORRUPTION.search(message)


def _relation_name(qualified: str, database: str) -> str:
    """'hospital_management.public.appointments' -> 'public.appointments'."""
    prefix = f"{database}."
    return qualified[len(prefix) :] if qualified.startswith(prefix) else qualified.split(".", 1)[-1]


def count_checked(stderr: str) -> int:
    """How many relations pg_amcheck --verbose says it checked."""
    return sum(1 for line in stderr.splitlines() if _CHECKING.match(line.strip()))


def read_result(exit_code: int, stdout: str, stderr: str, *, database: str) -> list[Finding]:
    """The findings, or one-line errors for what is not a check result: amcheck missing in the
    database, pg_amcheck failing on its own (a connection, a table name that matches nothing)."""
    if "amcheck is not installed" in stderr:
        raise amcheck_missing(database)
    findings = parse_pg_amcheck(stdout, database)
    if exit_code not in (0, EXIT_CORRUPTION) or (exit_code == EXIT_CORRUPTION and not findings):
        errors = [line for line in stderr.splitlines() if line.startswith("pg_amcheck: error:")]
        raise ToolFailed(
            "pg_amcheck", exit_code, (errors[-1] if errors else last_line(stderr)).removeprefix("pg_amcheck: error: ")
        )
    return findings


def amcheck_missing(database: str, detail: str = "the amcheck extension is not installed") -> PreflightFailed:
    return PreflightFailed(
        f"pg_amcheck cannot check {database}: {detail}",
        hint=f"as a superuser, once: psql -d {database} -f {INSTALL_SQL} (CREATE EXTENSION amcheck; GRANT EXECUTE on its "
        "two read-only checks to the backup role)",
    )


@dataclass(frozen=True)
class AmcheckReady(Record):
    """The amcheck extension as installed in the checked database."""

    version: str
    schema: str


@dataclass(frozen=True)
class IntegrityCheck(Record):
    """One check as hms_integrity_check hands it to its verdict: the report (the stored
    report.json document, format_version 1) and the keys it was stored under."""

    report: dict[str, Any]
    stored: dict[str, str]


def check_amcheck_ready(conn: ConnectionInfo) -> AmcheckReady:
    """The amcheck extension exists in the database and the connected role may run pg_amcheck's
    two checks; PreflightFailed naming what is missing and how to install it otherwise."""
    from hms_dr.database import connect

    with connect(conn) as connection:
        row = connection.execute(sqlfiles.text("integrity/amcheck_installed")).fetchone()
    if row is None:
        raise amcheck_missing(conn.dbname)
    version, schema, may_check_indexes, may_check_tables = row
    if not (may_check_indexes and may_check_tables):
        raise amcheck_missing(
            conn.dbname, f"role {conn.user} may not execute amcheck's bt_index_check and verify_heapam"
        )
    return AmcheckReady(version=str(version), schema=str(schema))


def run_pg_amcheck(
    conn: ConnectionInfo,
    *,
    heapallindexed: bool,
    jobs: int,
    lock_timeout_s: int,
    tables: Sequence[str] = (),
    timeout_s: float | None = None,
) -> AmcheckResult:
    """Run pg_amcheck on ``conn``'s database as ``conn``'s role; the full stderr goes to the log."""
    import time

    from hms_dr.database import client_tools

    argv = pg_amcheck_argv(client_tools(conn), heapallindexed=heapallindexed, jobs=jobs, tables=tables)
    log.info("running %s on %s", " ".join(argv[1:]), conn.describe())
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=amcheck_env(conn, lock_timeout_s=lock_timeout_s),
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolFailed("pg_amcheck", None, f"did not finish within {timeout_s:.0f} s") from None
    seconds = time.monotonic() - started
    for line in done.stderr.splitlines():
        if not _CHECKING.match(line.strip()):
            log.info("pg_amcheck: %s", line)
    findings = read_result(done.returncode, done.stdout, done.stderr, database=conn.dbname)
    checked = count_checked(done.stderr)
    log.info(
        "pg_amcheck checked %d relation(s) of %s in %.1f s: %d with findings",
        checked,
        conn.dbname,
        seconds,
        len(findings),
    )
    return AmcheckResult(
        done.returncode, tuple(findings), checked, tuple(argv[1:]), round(seconds, 3), done.stdout[:MAX_OUTPUT_CHARS]
    )


def owning_tables(conn: ConnectionInfo, relations: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each ``schema.name``: its relkind and the table a restore brings back to repair it."""
    from hms_dr.database import connect

    if not relations:
        return {}
    schemas = [r.split(".", 1)[0] for r in relations]
    names = [r.split(".", 1)[1] if "." in r else r for r in relations]
    with connect(conn) as connection:
        rows = connection.execute(
            sqlfiles.text("integrity/owning_tables"), {"schemas": schemas, "relations": names}
        ).fetchall()
    owners = {}
    for schema, name, relkind, table_schema, table_name in rows:
        owners[f"{schema}.{name}"] = {
            "relkind": relkind,
            "table": None if table_name is None else f"{table_schema}.{table_name}",
        }
    return owners


def suggested_restore(tables: Sequence[str], *, report_id: str) -> dict[str, Any]:
    """The hms_dr_restore conf that brings ``tables`` (schema.name) back from the newest daily
    backup into a staging schema named after the report (new for each report: hms_dr_restore
    refuses an existing one), checks them and, after its approval step, swaps them in."""
    return {
        "source": "logical_backup",
        "backup_id": "latest",
        # As the DR form takes them: SQL spelling, a public table by its name alone.
        "tables": [_form_spelling(t) for t in tables],
        "all_tables": False,  # explicit: the named tables, never every table
        "target_kind": "staging_schema",
        "staging_schema": f"dr_{report_id.lower()}",
        "run_quality_checks": True,
        "swap_into_production": True,
        "reason": f"pg_amcheck found corruption in {', '.join(tables)} (integrity report {report_id})",
    }


def _form_spelling(key: str) -> str:
    schema, name = split_relation_key(key)
    return spell_identifier(name) if schema == "public" else sql_spelling(schema, name)


def build_report(
    result: AmcheckResult,
    owners: Mapping[str, Mapping[str, Any]],
    *,
    cluster: str,
    database: str,
    report_id: str,
    checked_at: datetime,
    amcheck: AmcheckReady,
) -> dict[str, Any]:
    """The report: status (clean | corrupt | incomplete), each finding with the table a restore
    would bring back, and the repairs: the hms_dr_restore conf for the user tables, REINDEX for
    an index whose table is sound, a point-in-time recovery for a damaged system catalog."""
    corrupt = [f for f in result.findings if f.corruption]
    unchecked = [f for f in result.findings if not f.corruption]
    relations = []
    for finding in result.findings:
        owner = owners.get(finding.relation, {})
        relations.append({**finding.to_dict(), "table": owner.get("table"), "relkind": owner.get("relkind")})
    damaged_tables = [r["table"] or r["relation"] for r in relations if r["corruption"]]
    user_tables = list(dict.fromkeys(t for t in damaged_tables if t.split(".", 1)[0] not in _CATALOG_SCHEMAS))
    catalog = sorted({t for t in damaged_tables if t.split(".", 1)[0] in _CATALOG_SCHEMAS})
    corrupt_names = [f.relation for f in corrupt]
    repair: dict[str, Any] = {}
    if user_tables:
        repair["dag_id"] = REPAIR_DAG_ID
        repair["conf"] = suggested_restore(user_tables, report_id=report_id)
        heaps_damaged = {r["table"] for r in relations if r["corruption"] and r["kind"] != "btree index"}
        reindex = [
            r["relation"]
            for r in relations
            if r["corruption"] and r["kind"] == "btree index" and r["table"] not in heaps_damaged
        ]
        if reindex:
            repair["index_only"] = [f"REINDEX INDEX CONCURRENTLY {name};" for name in reindex]
    if catalog:
        repair["system_catalog"] = (
            f"system catalog(s) {', '.join(catalog)} are damaged: a table restore cannot repair them; build a new cluster with "
            "hms_dr_pitr (target latest) and move the application to it"
        )
    status = "corrupt" if corrupt else ("incomplete" if unchecked else "clean")
    return {
        "format_version": 1,
        "report_id": report_id,
        "cluster": cluster,
        "database": database,
        "checked_at": checked_at.isoformat(),
        "status": status,
        "relations_checked": result.relations_checked,
        "corrupt_relations": corrupt_names,
        "unchecked_relations": [f.relation for f in unchecked],
        "findings": relations,
        "repair": repair,
        "pg_amcheck": {
            "argv": list(result.argv),
            "exit_code": result.exit_code,
            "seconds": result.seconds,
            "amcheck": amcheck.to_xcom(),
        },
    }


def render_text(report: Mapping[str, Any]) -> str:
    """The short report: a verdict line, one line per finding, the repair to run."""
    lines = [
        f"Integrity check {report['report_id']} of {report['cluster']}/{report['database']}: {report['status'].upper()} "
        f"({report['relations_checked']} relations checked with pg_amcheck, {report['pg_amcheck']['seconds']:.0f} s)",
    ]
    for finding in report["findings"]:
        owner = (
            f" (of table {finding['table']})"
            if finding.get("table") and finding["table"] != finding["relation"]
            else ""
        )
        where = f" at {'; '.join(finding['locations'])}" if finding["locations"] else ""
        verdict = "CORRUPT" if finding["corruption"] else "not checked"
        lines.append(f"  {verdict}: {finding['kind']} {finding['relation']}{owner}{where}: {finding['messages'][0]}")
    repair = report.get("repair") or {}
    if repair.get("conf"):
        lines.append(
            f"Repair: trigger {repair['dag_id']} with this conf: {json.dumps(repair['conf'], separators=(', ', ': '))}"
        )
    for statement in repair.get("index_only", []):
        lines.append(f"  (an index alone is damaged: {statement} repairs it without a restore)")
    if repair.get("system_catalog"):
        lines.append(f"Repair: {repair['system_catalog']}")
    return "\n".join(lines) + "\n"


def judge(report: Mapping[str, Any]) -> None:
    """CorruptionFound (naming the relations, the repair's conf in the hint) or
    IntegrityCheckIncomplete; nothing for a clean report."""
    if report["status"] == "corrupt":
        repair = report.get("repair") or {}
        described = []
        for finding in report["findings"]:
            if finding["corruption"]:
                owner = (
                    f" (of {finding['table']})"
                    if finding.get("table") and finding["table"] != finding["relation"]
                    else ""
                )
                described.append(f"{finding['relation']}{owner}")
        hint = None
        if repair.get("conf"):
            hint = f"trigger {repair['dag_id']} with conf {json.dumps(repair['conf'], separators=(',', ':'))}"
        elif repair.get("system_catalog"):
            hint = repair["system_catalog"]
        raise CorruptionFound(
            f"pg_amcheck found corruption in {len(described)} relation(s) of {report['database']}: {', '.join(described)}",
            [f"{f['kind']} {f['relation']}: {f['messages'][0]}" for f in report["findings"] if f["corruption"]],
            hint=hint,
        )
    if report["status"] == "incomplete":
        raise IntegrityCheckIncomplete(
            f"pg_amcheck could not check {len(report['unchecked_relations'])} relation(s) of {report['database']}: "
            f"{', '.join(report['unchecked_relations'][:10])} ({report['findings'][0]['messages'][0]})",
            hint="no corruption found in what was checked; run hms_integrity_check again (a lock timeout) or fix the role's grants",
        )


def store_report(store: Store, report: Mapping[str, Any], output: str) -> dict[str, str]:
    """``<cluster>/integrity/<report id>/``: report.json, report.txt and pg_amcheck's own output."""
    prefix = f"{report['cluster']}/{INTEGRITY_FOLDER}/{report['report_id']}"
    files = {
        "report.json": (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        "report.txt": render_text(report).encode("utf-8"),
        "pg_amcheck.out": output.encode("utf-8"),
    }
    keys = {}
    for name, data in files.items():
        store.put_bytes(f"{prefix}/{name}", data)
        keys[name] = store.describe(f"{prefix}/{name}")
    return keys
