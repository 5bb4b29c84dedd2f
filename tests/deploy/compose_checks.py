"""Checks of docker-compose.yaml and the Dockerfile that need no Docker engine.

Each check takes plain data (the compose file as loaded by PyYAML, the Dockerfile's text, the
policy) and returns a list of problems, one line each; an empty list means the check passed.
tests/deploy/test_compose.py runs them on the real files and on deliberately broken copies.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DEPLOY_DIR = REPO_ROOT / "deploy"
ENV_EXAMPLE = DEPLOY_DIR / ".env.example"
COMPOSE_POLICY = DEPLOY_DIR / "policy.compose.yaml"
COMMITTED_POLICY = REPO_ROOT / "include" / "policy.yaml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# The development sandbox (the hms_sandbox package): beside plugins/, and in no production
# container, neither mounted nor copied into the image nor on PYTHONPATH.
SANDBOX_DIR = REPO_ROOT / "sandbox"
SANDBOX_PACKAGE = "hms_sandbox"
# A vendored copy (source, commit and licence in schemas/README.md): the suite needs nothing
# outside the repository.
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"

AIRFLOW_COMMON = "x-airflow-common"
AIRFLOW_BASE_IMAGE = "apache/airflow:3.3.2"
HMS_SERVICE = "hms-postgres"
DBHOST_WORKER = "airflow-worker-dbhost"
MINIO_INIT = "minio-init"
REQUIRED_SERVICES = (
    "airflow-postgres",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    DBHOST_WORKER,
    HMS_SERVICE,
    "hms-restore-target",
    "minio",
    MINIO_INIT,
)
HEALTHCHECKED_SERVICES = (
    "airflow-postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-worker",
    DBHOST_WORKER,
    HMS_SERVICE,
    "hms-restore-target",
    "minio",
)
# The PostgreSQL major is the build argument PG_MAJOR (compose passes HMS_PG_MAJOR), default 15:
# Debian 12's own; hms-dr supports 13 and later.
PG_MAJOR_ARG = "PG_MAJOR"
PG_MAJOR_VARIABLE = "HMS_PG_MAJOR"
DEFAULT_PG_MAJOR = "15"
MIN_PG_MAJOR = 13
# The PostgreSQL services of the layout, both of HMS_PG_MAJOR (airflow-postgres is Airflow's own).
PG_SERVICES = (HMS_SERVICE, "hms-restore-target")
# The postgres image's layout from 18 on, used for every major: one volume at PG_VOLUME_TARGET and
# the cluster in <major>/docker under it; 18+ refuses a mount at the old PGDATA.
PG_VOLUME_TARGET = "/var/lib/postgresql"
OLD_PGDATA = "/var/lib/postgresql/data"
REQUIRED_APT_PACKAGES = ("postgresql-${PG_MAJOR}", "postgresql-client-${PG_MAJOR}", "gnupg", "zstd")
# The PGDG repository's set-up script from Debian's postgresql-common (its key ships with it).
PGDG_SETUP = "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh"
# A variable with one of these in its name holds a credential: it must come from .env and fail
# loudly when missing (${VAR:?...}), and .env.example must leave it empty.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|PASSPHRASE|PRIVATE|FERNET|TOKEN|_KEY$")
# ...except these, whose empty value means something: no SMTP login (an open relay).
OPTIONAL_CREDENTIALS = frozenset({"HMS_SMTP_PASSWORD"})
# The shape of each connection: its conn_type and the fields that must be set. The same ids and
# shapes as sandbox/hms_sandbox/airflow_env.py builds for the sandbox.
CONNECTION_SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "hms_postgres": ("postgres", ("host", "port", "login", "password", "schema")),
    "hms_replication": ("postgres", ("host", "port", "login", "password", "schema")),
    "hms_admin": ("postgres", ("host", "port", "login", "password", "schema")),
    "hms_restore_target": ("postgres", ("host", "port", "login", "password", "schema")),
    "hms_storage": ("aws", ("login", "password", "extra.endpoint_url", "extra.region_name")),
    "hms_offsite": ("aws", ("login", "password", "extra.endpoint_url", "extra.region_name")),
    "hms_backup_encryption": ("generic", ("extra.public_key",)),
    "hms_restore_key": ("generic", ("password", "extra.private_key")),
    "hms_smtp": ("smtp", ("login", "password")),
}
# Connection fields that hold credentials: each must be exactly one ${VAR} from .env.
SECRET_CONNECTION_FIELDS = ("password", "extra.public_key", "extra.private_key")

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_MARKER = "@@{}@@"
_URL_PASSWORD = re.compile(r"://[^/:@\s]*:(?P<password>[^@\s]*)@")


# ------------------------------------------------------------------ compose interpolation


@dataclass(frozen=True)
class Reference:
    """One ${VAR...} in a compose value: the variable, the operator (":-", ":?", ...) and its argument."""

    name: str
    op: str
    arg: str


def references(value: str) -> list[Reference]:
    """The variables a compose string interpolates ($$ is a literal dollar)."""
    found = []
    for match in _REFERENCE.finditer(value):
        if match.group("escaped"):
            continue
        name = match.group("name") or match.group("bare")
        found.append(Reference(name, match.group("op") or "", match.group("arg") or ""))
    return found


def interpolate(value: str, env: Mapping[str, str], *, marker: bool = False) -> str:
    """``value`` as compose interpolates it from ``env`` (defaults apply; a missing ``:?``
    variable raises KeyError). ``marker=True`` replaces each variable by ``@@NAME@@`` instead."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op") or "", match.group("arg") or ""
        if marker:
            return _MARKER.format(name)
        current = env.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":?", "?") and not current and not (op == "?" and current is not None):
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _REFERENCE.sub(substitute, value)


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    """``node`` (the compose file or a part of it) with every string interpolated from ``env``,
    defaults applied; a required variable ``env`` lacks becomes ``@@NAME@@``."""
    if isinstance(node, str):
        missing = {ref.name: _MARKER.format(ref.name) for ref in references(node) if ref.op in (":?", "?")}
        return interpolate(node, {**missing, **{k: v for k, v in env.items() if v}})
    if isinstance(node, Mapping):
        return {key: interpolated(child, env) for key, child in node.items()}
    if isinstance(node, list):
        return [interpolated(child, env) for child in node]
    return node


def defaults_only(value: str) -> str:
    """``value`` with every variable at its compose default (a required one as ``@@NAME@@``)."""
    try:
        return interpolate(value, {})
    except KeyError:
        return interpolate(value, {}, marker=True)


def load_compose_schema(path: Path) -> dict[str, Any]:
    """The Compose Specification's JSON schema; FileNotFoundError naming the path if it is absent."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the Compose Specification schema {path} is missing: it is vendored as "
            "tests/deploy/schemas/compose-spec.json (see the README beside it)"
        )
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string scalar under ``node`` with its dotted path."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, child in node.items():
            yield from strings(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from strings(child, f"{path}[{index}]")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of a compose .env file (single quotes literal, double quotes unescaped)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{path}: not a NAME=value line: {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].encode().decode("unicode_escape")
        values[name] = value
    return values


# ------------------------------------------------------------------ services and their parts


def services(compose: Mapping[str, Any]) -> Mapping[str, Any]:
    return compose.get("services") or {}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's (or anchor's) environment as a mapping, whichever syntax it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_words(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(word) for word in command]


@dataclass(frozen=True)
class Mount:
    kind: str  # "bind" or "volume"
    source: str
    target: str


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    """The service's volumes, short or long syntax, sources at their compose defaults."""
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = defaults_only(entry).split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        else:
            source, target = defaults_only(str(entry.get("source", ""))), str(entry.get("target", ""))
            kind = str(entry.get("type", "volume"))
        found.append(Mount(kind, source, target))
    return found


def queues(service: Mapping[str, Any]) -> list[str] | None:
    """The Celery queues of a ``celery worker`` command (["default"] without -q), else None."""
    words = command_words(service)
    if "celery" not in words or "worker" not in words:
        return None
    for index, word in enumerate(words):
        if word in ("-q", "--queues") and index + 1 < len(words):
            return words[index + 1].split(",")
        if word.startswith("--queues="):
            return word.split("=", 1)[1].split(",")
    return ["default"]


def _field(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# ------------------------------------------------------------------ the checks


def schema_problems(compose: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Errors of the Compose Specification's JSON schema."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [
        f"schema: {'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(compose), key=lambda e: list(map(str, e.absolute_path)))
    ]


def service_problems(compose: Mapping[str, Any]) -> list[str]:
    return [f"service {name} is missing" for name in REQUIRED_SERVICES if name not in services(compose)]


def local_file_problems(compose: Mapping[str, Any], root: Path) -> list[str]:
    """Every bind-mounted path, build context, Dockerfile and env_file must exist under ``root``."""
    problems = []
    for name, service in services(compose).items():
        for mount in mounts(service):
            if mount.kind == "bind" and not (root / mount.source).exists():
                problems.append(f"{name}: bind mount source {mount.source} does not exist")
        build = service.get("build")
        if build is not None:
            context = root / defaults_only(build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (context / dockerfile).is_file():
                problems.append(f"{name}: build file {context / dockerfile} does not exist")
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file.get("path", "")
            required = True if isinstance(env_file, str) else env_file.get("required", True)
            if required and not (root / path).is_file():
                problems.append(f"{name}: env_file {path} does not exist")
    return problems


def holds(source: Path, folder: Path) -> bool:
    """Whether ``source`` is ``folder``, inside it, or a folder holding it: mounting or copying
    ``source`` takes (part of) ``folder`` along."""
    source, folder = source.resolve(), folder.resolve()
    return source == folder or folder in source.parents or source in folder.parents


def sandbox_mount_problems(compose: Mapping[str, Any], root: Path) -> list[str]:
    """No service (every one is production) bind-mounts the development sandbox, or a folder
    holding it, or names it on its PYTHONPATH."""
    sandbox = root / SANDBOX_DIR.name
    problems = []
    for name, service in services(compose).items():
        for mount in mounts(service):
            if mount.kind == "bind" and mount.source and holds(root / mount.source, sandbox):
                problems.append(f"{name}: mounts {mount.source}, which holds the development sandbox")
        for entry in environment(service).get("PYTHONPATH", "").split(":"):
            if entry and (Path(entry).name == SANDBOX_DIR.name or SANDBOX_PACKAGE in entry):
                problems.append(f"{name}: PYTHONPATH names the development sandbox ({entry})")
    return problems


def volume_problems(compose: Mapping[str, Any]) -> list[str]:
    """Every named volume used is declared at the top level, and every declared one is used."""
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    problems = []
    for name, service in services(compose).items():
        for mount in mounts(service):
            if mount.kind == "volume" and mount.source:
                used.add(mount.source)
                if mount.source not in declared:
                    problems.append(f"{name}: volume {mount.source} is not declared under volumes:")
    problems += [f"volume {volume} is declared but no service mounts it" for volume in sorted(declared - used)]
    return problems


def variable_problems(compose: Mapping[str, Any], example: Mapping[str, str]) -> list[str]:
    """Every ${VAR} has a line in .env.example and every line there is used; a credential
    variable is required (${VAR:?...}) wherever it is used and empty in the example."""
    problems = []
    used: set[str] = set()
    for path, value in strings(compose):
        for ref in references(value):
            used.add(ref.name)
            if ref.name not in example:
                problems.append(f"{path}: ${{{ref.name}}} has no line in deploy/.env.example")
            if SECRET_NAME.search(ref.name) and ref.name not in OPTIONAL_CREDENTIALS and ref.op != ":?":
                problems.append(f"{path}: credential ${{{ref.name}}} must be written ${{{ref.name}:?message}}")
            if not ref.op and not SECRET_NAME.search(ref.name):
                problems.append(f"{path}: ${{{ref.name}}} has neither a default (:-) nor a required mark (:?)")
    for name, value in example.items():
        if name not in used:
            problems.append(f"deploy/.env.example: {name} is not used by docker-compose.yaml")
        if SECRET_NAME.search(name) and value:
            problems.append(f"deploy/.env.example: {name} holds a value; credentials stay empty in the example")
    return problems


def connection_problems(compose: Mapping[str, Any], connection_ids: Sequence[str]) -> list[str]:
    """Every connection id has an AIRFLOW_CONN_ in the common Airflow environment (so in every
    worker), as JSON of the right shape."""
    common = environment(compose.get(AIRFLOW_COMMON) or {})
    problems = []
    for conn_id in connection_ids:
        var = f"AIRFLOW_CONN_{conn_id.upper()}"
        if var not in common:
            problems.append(f"{AIRFLOW_COMMON}: no {var} for connection {conn_id}")
            continue
        try:
            conn = json.loads(interpolate(common[var], {}, marker=True))
        except json.JSONDecodeError as exc:
            problems.append(f"{var} is not JSON: {exc}")
            continue
        conn_type, required = CONNECTION_SHAPES.get(conn_id, (None, ()))
        if not isinstance(conn, dict) or not conn.get("conn_type"):
            problems.append(f"{var} has no conn_type")
            continue
        if conn_type and conn["conn_type"] != conn_type:
            problems.append(f"{var}: conn_type {conn['conn_type']!r}, expected {conn_type!r}")
        problems += [f"{var}: {field} is not set" for field in required if _field(conn, field) in (None, "")]
    for name, service in services(compose).items():
        if queues(service) is not None:
            env = environment(service)
            problems += [
                f"{name}: a worker without AIRFLOW_CONN_{conn_id.upper()}"
                for conn_id in connection_ids
                if f"AIRFLOW_CONN_{conn_id.upper()}" not in env
            ]
    return problems


def secret_literal_problems(compose: Mapping[str, Any]) -> list[str]:
    """No credential is written in the compose file: credential variables, connection fields and
    URL passwords are each exactly one ${VAR} from .env."""
    problems = []
    holders = [(AIRFLOW_COMMON, compose.get(AIRFLOW_COMMON) or {}), *list(services(compose).items())]
    for holder, service in holders:
        for key, value in environment(service).items():
            where = f"{holder}.environment.{key}"
            if key.startswith("AIRFLOW_CONN_"):
                try:
                    conn = json.loads(interpolate(value, {}, marker=True))
                except json.JSONDecodeError:
                    problems.append(f"{where} is not JSON")
                    continue
                fields = SECRET_CONNECTION_FIELDS + (("login",) if conn.get("conn_type") == "aws" else ())
                for field in fields:
                    found = _field(conn, field)
                    if found is not None and not re.fullmatch(r"@@[A-Za-z_][A-Za-z0-9_]*@@", str(found)):
                        problems.append(f"{where}: {field} is written in the file, not taken from .env")
            elif (
                SECRET_NAME.search(key)
                and not key.endswith("_FILE")
                and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}", value)
            ):
                problems.append(f"{where} is not a single ${{VAR:?...}} from .env")
            for match in _URL_PASSWORD.finditer(value):
                if not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}", match.group("password")):
                    problems.append(f"{where}: the URL's password is written in the file, not taken from .env")
    return problems


def _image_problem(image: str) -> str | None:
    image = defaults_only(image)
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag"
    if last.rsplit(":", 1)[1] in ("", "latest"):
        return f"image {image} is not pinned (tag latest)"
    return None


def image_problems(compose: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, service in services(compose).items():
        image = service.get("image")
        if image is None:
            problems.append(f"{name}: no image: (a built image needs a pinned name:tag too)")
            continue
        problem = _image_problem(str(image))
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def healthcheck_problems(compose: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in HEALTHCHECKED_SERVICES:
        check = (services(compose).get(name) or {}).get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or test == ["NONE"]:
            problems.append(f"{name}: no healthcheck")
    return problems


def spool_problems(compose: Mapping[str, Any], spool_dir: str, spool_queue: str) -> list[str]:
    """The WAL spool volume is mounted at the policy's spool_dir by the HMS server and by the
    worker that serves the policy's spool queue, and archive_command writes to that path."""
    problems = []
    hms = services(compose).get(HMS_SERVICE) or {}
    spool_volumes = {m.source for m in mounts(hms) if m.kind == "volume" and m.target == spool_dir}
    if not spool_volumes:
        problems.append(f"{HMS_SERVICE} mounts no named volume at the policy's wal.spool_dir {spool_dir}")
    if environment(hms).get("HMS_WAL_SPOOL_DIR") != spool_dir:
        problems.append(f"{HMS_SERVICE}: HMS_WAL_SPOOL_DIR (archive_command's spool) is not {spool_dir}")
    if spool_queue == "default":
        problems.append("the policy's wal.spool_queue is 'default': the general worker would take spool tasks")
    workers = {name: queues(s) for name, s in services(compose).items() if queues(s) is not None}
    serving = [name for name, names in workers.items() if names and spool_queue in names]
    if serving != [DBHOST_WORKER]:
        problems.append(
            f"`celery worker -q {spool_queue}` should run in {DBHOST_WORKER} only, runs in {serving or 'none'}"
        )
    for name in serving:
        worker_volumes = {m.source for m in mounts(services(compose)[name]) if m.target == spool_dir}
        if not spool_volumes or not (worker_volumes & spool_volumes):
            problems.append(
                f"{name} serves {spool_queue} but does not mount {HMS_SERVICE}'s spool volume at {spool_dir}"
            )
    for name, names in workers.items():
        if spool_queue not in (names or []) and any(m.target == spool_dir for m in mounts(services(compose)[name])):
            problems.append(f"{name} mounts the spool but does not serve {spool_queue}")
    return problems


def pg_major_problems(compose: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """With the variables ``env`` (HMS_PG_MAJOR set or not), one major runs everywhere: the
    image's build argument, the image tag, both PostgreSQL services' images and data directories;
    each data volume is mounted at /var/lib/postgresql with PGDATA in <major>/docker inside it
    and no other mount at or in PGDATA; no HMS_DR_PG_BIN pins the tools, and no string of the
    file names another major (Airflow's own airflow-postgres aside)."""
    major = env.get(PG_MAJOR_VARIABLE) or DEFAULT_PG_MAJOR
    data = interpolated(compose, env)
    common = data.get(AIRFLOW_COMMON) or {}
    build = common.get("build") or {}
    args = build.get("args") or {} if isinstance(build, Mapping) else {}
    if isinstance(args, list):
        args = dict(item.split("=", 1) for item in args if "=" in item)
    problems = []
    if str(args.get(PG_MAJOR_ARG)) != major:
        problems.append(f"{AIRFLOW_COMMON}: build argument {PG_MAJOR_ARG} is {args.get(PG_MAJOR_ARG)!r}, not {major}")
    if not str(common.get("image", "")).endswith(f"-pg{major}"):
        problems.append(f"{AIRFLOW_COMMON}: image {common.get('image')} does not name PostgreSQL {major} in its tag")
    for name in PG_SERVICES:
        service = services(data).get(name) or {}
        image = str(service.get("image", ""))
        if not image.startswith(f"postgres:{major}-"):
            problems.append(f"{name}: image {image}, expected postgres:{major}-<debian release>")
        pgdata = environment(service).get("PGDATA", "")
        expected = f"{PG_VOLUME_TARGET}/{major}/docker"
        if pgdata != expected:
            problems.append(f"{name}: PGDATA is {pgdata or 'unset'}, expected {expected}")
        found = mounts(service)
        volumes_at_root = [m for m in found if m.kind == "volume" and m.source and m.target == PG_VOLUME_TARGET]
        if not volumes_at_root:
            problems.append(f"{name}: no named volume at {PG_VOLUME_TARGET} (the data would not persist)")
        for mount in found:
            if mount.target.rstrip("/") == OLD_PGDATA:
                problems.append(f"{name}: mounts {mount.source} at {OLD_PGDATA}, which PostgreSQL 18+ images refuse")
            if pgdata and (mount.target == pgdata or mount.target.startswith(pgdata + "/")):
                problems.append(f"{name}: {mount.source} is mounted at {mount.target}, at or inside PGDATA")
    holders = [(AIRFLOW_COMMON, common), *list(services(data).items())]
    for holder, service in holders:
        problems += [
            f"{holder}: {key} pins the PostgreSQL tools; hms-dr finds /usr/lib/postgresql/<major>/bin"
            for key in environment(service)
            if key == "HMS_DR_PG_BIN" or (key.startswith("HMS_DR_PG_BIN_") and key != f"HMS_DR_PG_BIN_{major}")
        ]
    other_major = re.compile(r"postgres(?:ql)?[:/-](\d+)(?![\d.])|-pg(\d+)\b")
    for path, value in strings(data):
        if path.startswith("services.airflow-postgres."):
            continue
        for match in other_major.finditer(value):
            number = next(group for group in match.groups() if group)
            if number != major:
                problems.append(f"{path}: {value!r} names PostgreSQL {number}, not {major}")
    return problems


# ------------------------------------------------------------------ the Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def apt_packages(instructions: Sequence[tuple[str, str]]) -> set[str]:
    """Packages named by every `apt-get install` in RUN instructions."""
    packages: set[str] = set()
    for keyword, args in instructions:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", args):
            words = command.split()
            if words[:1] == ["apt-get"] and "install" in words:
                packages |= {w for w in words[words.index("install") + 1 :] if not w.startswith("-")}
    return packages


def dockerfile_args(instructions: Sequence[tuple[str, str]]) -> dict[str, str | None]:
    """ARG name -> default (None without one)."""
    found: dict[str, str | None] = {}
    for keyword, args in instructions:
        if keyword == "ARG":
            name, sep, default = args.partition("=")
            found[name.strip()] = default.strip().strip("'\"") if sep else None
    return found


def install_script(text: str) -> str:
    """The shell of the RUN that installs PostgreSQL (the one naming postgresql-${PG_MAJOR})."""
    runs = [
        args for keyword, args in dockerfile_instructions(text) if keyword == "RUN" and "postgresql-client-" in args
    ]
    if len(runs) != 1:
        raise ValueError(f"expected one RUN installing postgresql-client-*, found {len(runs)}")
    return runs[0]


def pg_major_dockerfile_problems(text: str) -> list[str]:
    """The major is the build argument PG_MAJOR, default 15, declared before the install and used
    for the packages and the version checks; nothing is pinned to one major (no HMS_DR_PG_BIN, no
    postgresql-NN), and a major other than 15 sets up the PGDG repository."""
    instructions = dockerfile_instructions(text)
    problems = []
    args = dockerfile_args(instructions)
    if args.get(PG_MAJOR_ARG) != DEFAULT_PG_MAJOR:
        problems.append(
            f"Dockerfile: no ARG {PG_MAJOR_ARG}={DEFAULT_PG_MAJOR} (found {args.get(PG_MAJOR_ARG, 'none')!r})"
        )
    try:
        script = install_script(text)
    except ValueError as exc:
        return [*problems, f"Dockerfile: {exc}"]
    run_at = next(i for i, (kw, a) in enumerate(instructions) if kw == "RUN" and a == script)
    if PG_MAJOR_ARG not in dockerfile_args(instructions[:run_at]):
        problems.append(f"Dockerfile: ARG {PG_MAJOR_ARG} is declared after the RUN that uses it")
    for tool in ("pg_dump", "initdb"):
        if f"/usr/lib/postgresql/${{{PG_MAJOR_ARG}}}/bin/{tool} --version" not in script:
            problems.append(f"Dockerfile: the build does not print {tool} --version of PG_MAJOR's major")
    if PGDG_SETUP not in script:
        problems.append(f"Dockerfile: no {PGDG_SETUP} for majors Debian 12 does not ship")
    for keyword, args_text in instructions:
        if keyword in ("RUN", "ENV") and re.search(r"postgresql(?:-client)?-\d|/postgresql/\d", args_text):
            problems.append(f"Dockerfile: {keyword} pins a PostgreSQL major: {args_text[:80]}...")
        if keyword == "ENV" and re.search(r"\bHMS_DR_PG_BIN\b", args_text):
            problems.append(
                "Dockerfile: ENV HMS_DR_PG_BIN pins one major; hms-dr finds /usr/lib/postgresql/<major>/bin"
            )
    return problems


def dockerfile_problems(text: str, root: Path) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = pg_major_dockerfile_problems(text)
    froms = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    if not froms or not (froms[0] == AIRFLOW_BASE_IMAGE or froms[0].startswith(AIRFLOW_BASE_IMAGE + "-")):
        problems.append(f"Dockerfile: FROM {froms[0] if froms else 'nothing'}, expected {AIRFLOW_BASE_IMAGE}")
    if not instructions or instructions[-1] != ("USER", "airflow"):
        problems.append(f"Dockerfile ends with {instructions[-1] if instructions else 'nothing'}, not USER airflow")
    missing = [p for p in REQUIRED_APT_PACKAGES if p not in apt_packages(instructions)]
    if missing:
        problems.append(f"Dockerfile: apt-get install lacks {', '.join(missing)}")
    pip_runs = [args for keyword, args in instructions if keyword == "RUN" and "pip install" in args]
    if not any(re.search(r"-r \S*requirements\.txt", a) and re.search(r"-c \S*constraints\.txt", a) for a in pip_runs):
        problems.append("Dockerfile: no `pip install -r requirements.txt -c constraints.txt`")
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    for args in copies:
        words = [w for w in args.split() if not w.startswith("--")]
        for source in words[:-1]:
            if not (root / source).exists():
                problems.append(f"Dockerfile: COPY source {source} does not exist")
    if not any(w.rstrip("/") == "include" for args in copies for w in args.split()[:-1]):
        problems.append("Dockerfile: include/ is not copied into the image")
    return problems + sandbox_copy_problems(text, root)


def sandbox_copy_problems(text: str, root: Path) -> list[str]:
    """No COPY or ADD from the build context takes the development sandbox (sandbox/, or a folder
    holding it) into the image."""
    sandbox = root / SANDBOX_DIR.name
    problems = []
    for keyword, args in dockerfile_instructions(text):
        if keyword not in ("COPY", "ADD") or "--from=" in args:
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        problems += [
            f"Dockerfile: {keyword} {source} takes the development sandbox into the image"
            for source in words[:-1]
            if "://" not in source and holds(root / source, sandbox)
        ]
    return problems


def dockerignore_problems(text: str) -> list[str]:
    """The build context leaves the development sandbox out (defence in depth: the Dockerfile
    copies none of it)."""
    patterns = {line.strip().strip("/") for line in text.splitlines() if line.strip() and not line.startswith("#")}
    return [] if SANDBOX_DIR.name in patterns else [f".dockerignore does not exclude {SANDBOX_DIR.name}/"]


# ------------------------------------------------------------------ the policy


def key_paths(data: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every key in a nested mapping."""
    if not isinstance(data, Mapping):
        return set()
    paths = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths.add(path)
        paths |= key_paths(value, path)
    return paths


def policy_connection_ids(node: Any, name: str = "") -> set[str]:
    """Every ``*connection_id`` a parsed Policy uses: its dataclasses walked, so a channel the
    policy leaves off (None) names none. The raw YAML mapping is not walked."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        found: set[str] = set()
        for field in dataclasses.fields(node):
            if field.name != "raw":
                found |= policy_connection_ids(getattr(node, field.name), field.name)
        return found
    if isinstance(node, Mapping):
        return set().union(*(policy_connection_ids(v, str(k)) for k, v in node.items()))
    if isinstance(node, (list, tuple)):
        return set().union(*(policy_connection_ids(v, name) for v in node))
    return {node} if name.endswith("connection_id") and isinstance(node, str) and node else set()
