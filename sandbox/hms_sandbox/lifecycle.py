"""Start, stop and report on the sandbox: PostgreSQL with WAL archiving, moto S3, an SMTP sink for
alerts, a GPG key, Airflow settings.

Starting is idempotent: secrets, ports, the cluster, the HMS data and the key are created once and
reused; only what is down is started again.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hms_dr.errors import PreflightFailed
from hms_dr.files import write_file_atomically
from hms_dr.pginstalls import INCREMENTAL_BACKUP_MAJOR, data_dir_major, data_install
from hms_sandbox.airflow_env import write_airflow_env
from hms_sandbox.cluster import (
    LocalCluster,
    ensure_reachable_by_server,
    free_port,
    prepare_server_dir,
    server_user,
)
from hms_sandbox.detached import environ_has, session_tree, stop_session_tree
from hms_sandbox.keys import export_public_key, export_secret_key, generate_key_pair, stop_gpg_agent
from hms_sandbox.pgmajors import DEFAULT_MAJOR, MAJOR_ENV_VAR, announce_embedded_postgres, sandbox_major
from hms_sandbox.policy_file import sandbox_policy_overrides, write_sandbox_policy
from hms_sandbox.s3server import MotoServer, create_buckets
from hms_sandbox.smtpsink import SmtpSink, mail_dir
from hms_sandbox.state import (
    GPG_UID,
    HMS_DATABASE,
    HMS_ROLES,
    OFFSITE_BUCKET,
    PRIMARY_BUCKET,
    Sandbox,
    SandboxPaths,
    SandboxSecrets,
    load_sandbox,
    load_secrets,
    load_state,
    save_secrets,
    save_state,
)

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_prerequisites(paths: SandboxPaths) -> None:
    """Fail before touching anything when a program or a repository file is missing."""
    for required in (paths.committed_policy, paths.conf_fragment, paths.archive_script):
        if not required.is_file():
            raise PreflightFailed(f"{required} is missing; the sandbox needs it")
    if not os.access(paths.archive_script, os.X_OK):
        raise PreflightFailed(f"{paths.archive_script} is not executable", hint=f"chmod 0755 {paths.archive_script}")
    for program_name in ("gpg", "gpgconf") + (("runuser",) if server_user() else ()):
        if shutil.which(program_name) is None:
            raise PreflightFailed(f"{program_name} not found on PATH")
    for server_path in (paths.data_dir, paths.spool_dir):
        ensure_reachable_by_server(server_path)


def _sandbox_major(paths: SandboxPaths, state: dict[str, Any], asked: int | None) -> int:
    """The major this sandbox runs: its data directory's once it exists, else the one asked for;
    the server programs of that major must be installed (PreflightFailed naming it otherwise)."""
    wanted = asked or sandbox_major()
    if (paths.data_dir / "PG_VERSION").exists():
        existing = data_dir_major(paths.data_dir)
        if (asked is not None or os.environ.get(MAJOR_ENV_VAR)) and existing != wanted:
            raise PreflightFailed(
                f"the sandbox in {paths.state_dir} runs PostgreSQL {existing}, not {wanted}",
                hint=f"make clean (or another SANDBOX=...) for a PostgreSQL {wanted} sandbox",
            )
        wanted = existing
    for program in ("initdb", "pg_ctl", "postgres"):
        data_install(wanted, data=f"the sandbox's PostgreSQL {wanted}").program(program)
    return wanted


def _make_private_dir(path: Path) -> None:
    """A directory we own; when root the server user may walk through it (0711), else 0700."""
    created = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for directory in created:
        directory.chmod(0o711 if server_user() else 0o700)


def archive_command(script: Path, spool_dir: Path) -> str:
    """The archive_command calling archive_wal.sh with the segment and the spool."""

    def quoted(path: Path) -> str:
        return shlex.quote(str(path.absolute())).replace("%", "%%")

    return f'{quoted(script)} "%p" {quoted(spool_dir)}'


def _server_files(paths: SandboxPaths) -> tuple[Path, Path]:
    """Copies of the configuration fragment and the archive script for the server to read, made
    at every start (an edit of the repository's files applies at the next start). Run as root, the
    server is the postgres OS user, which may not traverse the clone (e.g. under a 0700
    `mktemp -d`); the state directory is made for it."""
    _make_private_dir(paths.server_files_dir)
    copies = []
    for source, mode in ((paths.conf_fragment, 0o644), (paths.archive_script, 0o755)):
        copy = paths.server_files_dir / source.name
        write_file_atomically(copy, source.read_text(encoding="utf-8"), mode=mode)
        copies.append(copy)
    return copies[0], copies[1]


def _start_postgres(
    paths: SandboxPaths, state: dict[str, Any], sandbox_secrets: SandboxSecrets, major: int
) -> LocalCluster:
    postgres_state = state.setdefault("postgres", {})
    cluster = LocalCluster(
        paths.data_dir,
        int(postgres_state.setdefault("port", free_port())),
        paths.pg_log_file,
        paths.socket_dir,
        major=major,
    )
    prepare_server_dir(paths.spool_dir, 0o700)
    conf_fragment, archive_script = _server_files(paths)
    if not cluster.is_initialized():
        conf = {"archive_command": archive_command(archive_script, paths.spool_dir)}
        if major >= INCREMENTAL_BACKUP_MAJOR:
            conf["summarize_wal"] = "on"  # incremental base backups read the WAL summaries
        cluster.init(
            sandbox_secrets.role_passwords["postgres"],
            data_checksums=True,
            conf=conf,
            conf_fragment=conf_fragment,
        )
        postgres_state["major"] = major
        postgres_state["initialized_at"] = _now()
        save_state(paths, state)
    cluster.start()
    postgres_state["pid"] = cluster.postmaster_pid()
    return cluster


RESTORE_SUPERUSER_KEY = "restore_target_postgres"


def _restore_cluster(paths: SandboxPaths, port: int, major: int = DEFAULT_MAJOR) -> LocalCluster:
    base = paths.state_dir / "pg" / "restore-target"
    return LocalCluster(base / "data", port, base / "log" / "postgresql.log", base / "sockets", major=major)


def _with_restore_password(paths: SandboxPaths, sandbox_secrets: SandboxSecrets) -> SandboxSecrets:
    """The secrets with a superuser password for the restore-test server (generated once)."""
    if RESTORE_SUPERUSER_KEY in sandbox_secrets.role_passwords:
        return sandbox_secrets
    import secrets as token_source

    passwords = {**sandbox_secrets.role_passwords, RESTORE_SUPERUSER_KEY: token_source.token_urlsafe(24)}
    sandbox_secrets = replace(sandbox_secrets, role_passwords=passwords)
    save_secrets(paths, sandbox_secrets)
    return sandbox_secrets


def _init_restore_target(paths: SandboxPaths, port: int, superuser_password: str, major: int) -> bool:
    """initdb of the restore-test server unless done before; whether it ran. Touches nothing but
    its own directory, so it may run beside the primary's start."""
    cluster = _restore_cluster(paths, port, major)
    if cluster.is_initialized():
        return False
    cluster.init(superuser_password, data_checksums=True)
    return True


def _start_restore_target(paths: SandboxPaths, state: dict[str, Any], *, initialized_now: bool) -> None:
    """A second cluster, isolated from production, where restore tests create scratch databases."""
    target_state = state["restore_target"]
    if initialized_now:
        target_state["initialized_at"] = _now()
        save_state(paths, state)
    cluster = _restore_cluster(paths, int(target_state["port"]))  # its data directory says its major
    cluster.start()
    target_state["pid"] = cluster.postmaster_pid()


def _choose_ports(state: dict[str, Any], components: tuple[str, ...]) -> None:
    """A distinct free port for each component without one yet (chosen before any of them listens)."""
    taken = {int(state[name]["port"]) for name in components if "port" in state.get(name, {})}
    for name in components:
        section = state.setdefault(name, {})
        if "port" not in section:
            port = free_port()
            while port in taken:
                port = free_port()
            section["port"] = port
            taken.add(port)


def _load_hms_database(
    cluster: LocalCluster, state: dict[str, Any], sandbox_secrets: SandboxSecrets, scale_mb: float
) -> None:
    loaded = state.get("hms_database")
    if loaded:
        if loaded.get("scale_mb") != scale_mb:
            log.info(
                "HMS database already loaded at scale %s MB; not reloading it at %s MB",
                loaded.get("scale_mb"),
                scale_mb,
            )
        return
    from hms_sandbox.hmsdb import create_hms_database

    started = datetime.now(UTC)
    summary = create_hms_database(
        cluster.dsn("postgres", sandbox_secrets.role_passwords["postgres"], "postgres"),
        database=HMS_DATABASE,
        scale_mb=scale_mb,
        passwords={role: sandbox_secrets.role_passwords[role] for role in HMS_ROLES},
    )
    state["hms_database"] = {
        "database": HMS_DATABASE,
        "scale_mb": scale_mb,
        "loaded_at": _now(),
        "load_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "summary": _without_secrets(summary),
    }


def _install_amcheck(cluster: LocalCluster, sandbox_secrets: SandboxSecrets) -> None:
    """amcheck in the HMS database and the backup role's right to run pg_amcheck's checks
    (hms_integrity_check), as the runbook's one-time setup does; idempotent, run on every start."""
    import psycopg

    sql_file = Path(__file__).resolve().parents[2] / "include" / "sql" / "integrity" / "install_amcheck.sql"
    with psycopg.connect(
        cluster.dsn("postgres", sandbox_secrets.role_passwords["postgres"], HMS_DATABASE), autocommit=True
    ) as conn:
        conn.execute(sql_file.read_text(encoding="utf-8"))  # type: ignore[arg-type]  # trusted file, not user input
    log.info("amcheck installed in %s for hms_integrity_check", HMS_DATABASE)


def _without_secrets(summary: Any) -> Any:
    """Keep the generator's summary in state.json, minus anything that could be a credential."""
    if not isinstance(summary, dict):
        return None
    suspicious = ("password", "secret", "dsn", "key", "conninfo")
    return {
        str(k): v
        for k, v in summary.items()
        if not any(word in str(k).lower() for word in suspicious)
        and isinstance(v, (int, float, str, bool, list, dict, type(None)))
    }


def _start_s3(paths: SandboxPaths, state: dict[str, Any], sandbox_secrets: SandboxSecrets) -> MotoServer:
    s3_state = state.setdefault("s3", {})
    server = MotoServer(int(s3_state.setdefault("port", free_port())), paths.s3_dir)
    server.start()
    # moto forgets everything when it stops: (re)create the buckets on every start.
    create_buckets(
        server.endpoint_url,
        [PRIMARY_BUCKET, OFFSITE_BUCKET],
        access_key=sandbox_secrets.s3_access_key,
        secret_key=sandbox_secrets.s3_secret_key,
        object_lock_buckets=[OFFSITE_BUCKET],
    )
    s3_state.update(
        pid=server.pid(),
        endpoint_url=server.endpoint_url,
        buckets=[PRIMARY_BUCKET, OFFSITE_BUCKET],
        object_lock_buckets=[OFFSITE_BUCKET],
    )
    return server


def _smtp_sink(paths: SandboxPaths, port: int) -> SmtpSink:
    return SmtpSink(port, mail_dir(paths.state_dir), paths.state_dir / "smtp")


def _start_smtp_sink(paths: SandboxPaths, state: dict[str, Any]) -> SmtpSink:
    """The local SMTP server alerts go to; it writes each message as an .eml file under mail/."""
    smtp_state = state.setdefault("smtp", {})
    sink = _smtp_sink(paths, int(smtp_state.setdefault("port", free_port())))
    sink.start()
    smtp_state.update(pid=sink.pid(), host="127.0.0.1", maildir=str(sink.maildir))
    return sink


def _needs_gpg_key(state: dict[str, Any], sandbox_secrets: SandboxSecrets) -> bool:
    return not (state.get("gpg", {}).get("fingerprint") and sandbox_secrets.gpg_secret_key)


def _generate_gpg_key(paths: SandboxPaths, passphrase: str) -> tuple[str, str, str]:
    """A new key pair in the sandbox's gnupg home: (fingerprint, armored public, armored secret).
    Touches nothing but that home, so it may run beside the clusters' start."""
    try:
        fingerprint = generate_key_pair(paths.gnupg_home, GPG_UID, passphrase)
        return (
            fingerprint,
            export_public_key(paths.gnupg_home, fingerprint),
            export_secret_key(paths.gnupg_home, fingerprint, passphrase),
        )
    finally:
        stop_gpg_agent(paths.gnupg_home)


def _record_gpg_key(
    paths: SandboxPaths, state: dict[str, Any], sandbox_secrets: SandboxSecrets, key: tuple[str, str, str]
) -> SandboxSecrets:
    fingerprint, public_key, secret_key = key
    with_keys = sandbox_secrets.with_gpg_keys(public_key, secret_key)
    save_secrets(paths, with_keys)
    state.setdefault("gpg", {}).update(
        fingerprint=fingerprint, uid=GPG_UID, home=str(paths.gnupg_home), created_at=_now()
    )
    return with_keys


def start_sandbox(state_dir: Path | None = None, scale_mb: float = 50, pg_major: int | None = None) -> Sandbox:
    """Bring the sandbox up (creating whatever does not exist yet) and return it.

    :param pg_major: the PostgreSQL major of a new sandbox (default $HMS_DR_SANDBOX_PG, else 15);
        an existing sandbox keeps its own, and asking for another is refused."""
    paths = SandboxPaths.at(state_dir)
    announce_embedded_postgres()
    _check_prerequisites(paths)
    _make_private_dir(paths.state_dir)
    state = load_state(paths)
    major = _sandbox_major(paths, state, pg_major)
    if paths.data_dir.exists() and any(paths.data_dir.iterdir()) and "postgres" not in state:
        raise PreflightFailed(
            f"{paths.data_dir} holds a cluster but {paths.state_file} does not record it",
            hint=f"remove {paths.state_dir} and start again",
        )
    sandbox_secrets = load_secrets(paths)
    if sandbox_secrets is None:
        sandbox_secrets = SandboxSecrets.generate()
        save_secrets(paths, sandbox_secrets)
    state.update(repo_root=str(paths.repo_root), database=HMS_DATABASE, paths=paths.as_strings())
    for directory in (paths.cluster_dir, paths.s3_dir, paths.staging_dir, paths.airflow_home):
        _make_private_dir(directory)

    sandbox_secrets = _with_restore_password(paths, sandbox_secrets)
    _choose_ports(state, ("postgres", "restore_target"))

    # The key pair and the restore server's initdb need nothing from the primary: on a first
    # start they run beside its initdb and data load (the gpg key alone takes 3-5 s). The threads
    # return their results; only this one writes the state and the secrets.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-start") as pool:
        new_key = (
            pool.submit(_generate_gpg_key, paths, sandbox_secrets.gpg_passphrase)
            if _needs_gpg_key(state, sandbox_secrets)
            else None
        )
        target_init = pool.submit(
            _init_restore_target,
            paths,
            int(state["restore_target"]["port"]),
            sandbox_secrets.role_passwords[RESTORE_SUPERUSER_KEY],
            major,
        )
        cluster = _start_postgres(paths, state, sandbox_secrets, major)
        save_state(paths, state)
        _load_hms_database(cluster, state, sandbox_secrets, scale_mb)
        save_state(paths, state)
        _install_amcheck(cluster, sandbox_secrets)
        _start_restore_target(paths, state, initialized_now=target_init.result())
        save_state(paths, state)
        _start_s3(paths, state, sandbox_secrets)
        save_state(paths, state)
        sink = _start_smtp_sink(paths, state)
        save_state(paths, state)
        if new_key is not None:
            sandbox_secrets = _record_gpg_key(paths, state, sandbox_secrets, new_key.result())
    state["started_at"] = _now()
    save_state(paths, state)

    sandbox = load_sandbox(paths.state_dir)
    write_sandbox_policy(
        paths.committed_policy,
        paths.policy_file,
        sandbox_policy_overrides(
            fingerprint=sandbox.fingerprint,
            staging_dir=paths.staging_dir,
            spool_dir=paths.spool_dir,
            smtp_port=sink.port,
            pg_major=sandbox.pg_major,
        ),
    )
    write_airflow_env(sandbox)
    log.info(
        "sandbox ready in %s: PostgreSQL on 127.0.0.1:%d, S3 at %s",
        paths.state_dir,
        sandbox.pg_port,
        sandbox.s3_endpoint_url,
    )
    return sandbox


# `make airflow` (hms_sandbox.standalone) runs `airflow standalone` in a session of its own
# and records it under "airflow" in state.json; every process of it has this variable.
STANDALONE_MARKER_VARIABLE = "HMS_DR_SANDBOX"
# Long enough for the scheduler to end its executor's workers and the API server to close its
# connections; short enough that Ctrl-C feels like it works.
STANDALONE_STOP_GRACE_S = 20


def _standalone_marker(paths: SandboxPaths) -> bytes:
    return f"{STANDALONE_MARKER_VARIABLE}={paths.state_dir}".encode()


def record_standalone(paths: SandboxPaths, *, session: int, port: int) -> None:
    """Record the session of a started `airflow standalone` (its pid: it leads the session)."""
    state = load_state(paths)
    state["airflow"] = {"pid": session, "port": port, "started_at": _now()}
    save_state(paths, state)


def forget_standalone(paths: SandboxPaths, *, session: int) -> None:
    """Clear the record of a stopped standalone, unless another one has been recorded since."""
    state = load_state(paths)
    if state.get("airflow", {}).get("pid") == session:
        state["airflow"]["pid"] = None
        state["airflow"]["stopped_at"] = _now()
        save_state(paths, state)


def running_standalone(paths: SandboxPaths) -> dict[str, Any] | None:
    """The recorded standalone's record while a process of its session still runs, else None.
    A process counts only if it has this sandbox's marker in its environment: after a reboot the
    recorded session id may belong to anything."""
    record = load_state(paths).get("airflow") or {}
    session = record.get("pid")
    if not session:
        return None
    marker = _standalone_marker(paths)
    if not any(environ_has(pid, marker) for pid in session_tree(int(session))):
        return None
    return dict(record)


def _stop_standalone(paths: SandboxPaths, state: dict[str, Any]) -> None:
    running = running_standalone(paths)
    if running is None:
        return
    stopped = stop_session_tree(int(running["pid"]), grace_s=STANDALONE_STOP_GRACE_S)
    log.info(
        "stopped airflow standalone (session %s): %d processes in %.1f s, %d needed SIGKILL",
        running["pid"],
        stopped.processes,
        stopped.seconds,
        stopped.killed,
    )
    state["airflow"].update(pid=None, stopped_at=_now())


def stop_sandbox(state_dir: Path | None = None) -> None:
    """Stop a `make airflow` left running, PostgreSQL, moto and any gpg agent; keep every file
    (moto's buckets are in memory and go)."""
    paths = SandboxPaths.at(state_dir)
    state = load_state(paths)
    if not state:
        log.info("no sandbox in %s: nothing to stop", paths.state_dir)
        return
    # First: its tasks would fail noisily if the servers went first.
    _stop_standalone(paths, state)
    if "postgres" in state:
        LocalCluster(paths.data_dir, int(state["postgres"]["port"]), paths.pg_log_file, paths.socket_dir).stop()
        state["postgres"]["pid"] = None
    if "restore_target" in state:
        _restore_cluster(paths, int(state["restore_target"]["port"])).stop()
        state["restore_target"]["pid"] = None
    if "s3" in state:
        MotoServer(int(state["s3"]["port"]), paths.s3_dir).stop()
        state["s3"]["pid"] = None
    if "smtp" in state:
        _smtp_sink(paths, int(state["smtp"]["port"])).stop()
        state["smtp"]["pid"] = None
    stop_gpg_agent(paths.gnupg_home)
    state["stopped_at"] = _now()
    save_state(paths, state)
    log.info("sandbox in %s stopped; data kept", paths.state_dir)


def sandbox_status(state_dir: Path | None = None) -> tuple[bool, list[str]]:
    """Whether every service runs, and one line per component."""
    paths = SandboxPaths.at(state_dir)
    state = load_state(paths)
    if not state:
        return False, [f"sandbox    not created in {paths.state_dir}"]
    lines: list[str] = []
    all_up = True
    if "postgres" in state:
        cluster = LocalCluster(paths.data_dir, int(state["postgres"]["port"]), paths.pg_log_file, paths.socket_dir)
        up = cluster.is_running()
        all_up &= up
        lines.append(f"postgres   {'running' if up else 'stopped'}  127.0.0.1:{cluster.port}  data {paths.data_dir}")
    else:
        all_up = False
        lines.append("postgres   not created")
    if "restore_target" in state:
        target = _restore_cluster(paths, int(state["restore_target"]["port"]))
        up = target.is_running()
        all_up &= up
        lines.append(
            f"restore    {'running' if up else 'stopped'}  127.0.0.1:{target.port}  (isolated restore-test server)"
        )
    loaded = state.get("hms_database")
    lines.append(
        f"hms data   {'loaded at ' + str(loaded.get('scale_mb')) + ' MB on ' + str(loaded.get('loaded_at')) if loaded else 'not loaded'}"
    )
    segments = [p for p in paths.spool_dir.iterdir() if not p.name.startswith(".")] if paths.spool_dir.is_dir() else []
    lines.append(f"wal spool  {len(segments)} file(s) in {paths.spool_dir}")
    if "s3" in state:
        server = MotoServer(int(state["s3"]["port"]), paths.s3_dir)
        up = server.is_running()
        all_up &= up
        lines.append(
            f"s3 (moto)  {'running' if up else 'stopped'}  {server.endpoint_url}  buckets {PRIMARY_BUCKET}, {OFFSITE_BUCKET}"
        )
    else:
        all_up = False
        lines.append("s3 (moto)  not created")
    if "smtp" in state:
        sink = _smtp_sink(paths, int(state["smtp"]["port"]))
        up = sink.is_running()
        all_up &= up
        lines.append(f"smtp sink  {'running' if up else 'stopped'}  127.0.0.1:{sink.port}  messages in {sink.maildir}")
    fingerprint = state.get("gpg", {}).get("fingerprint")
    lines.append(f"gpg key    {fingerprint or 'not generated'}")
    lines.append(
        f"airflow    {'source ' + str(paths.env_file) if paths.env_file.exists() else 'airflow.env not written'}"
    )
    standalone = running_standalone(paths)
    if standalone is not None:
        lines.append(
            f"airflow ui running  http://localhost:{standalone['port']}  (session {standalone['pid']}; `make stop` stops it)"
        )
    return all_up, lines


def describe_sandbox(sandbox: Sandbox) -> list[str]:
    """What runs where, without any secret."""
    paths = sandbox.paths
    return [
        f"hms-dr sandbox in {paths.state_dir}",
        f"  PostgreSQL {sandbox.pg_major}  127.0.0.1:{sandbox.pg_port}  database {sandbox.database}  log {paths.pg_log_file}",
        f"  WAL spool      {paths.spool_dir}",
        f"  S3 (moto)      {sandbox.s3_endpoint_url}  buckets {sandbox.primary_bucket}, {sandbox.offsite_bucket} (object lock)",
        f"  SMTP sink      alerts to {mail_dir(paths.state_dir)}/*.eml",
        f"  GPG key        {sandbox.fingerprint}",
        f"  policy         {paths.policy_file}",
        f"  Airflow        source {paths.env_file}",
    ]
