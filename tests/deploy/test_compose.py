"""docker-compose.yaml, the Dockerfile and deploy/ hold together, checked without a Docker engine:
the Compose Specification's schema, the services of the layout, every file and volume they name,
every variable against deploy/.env.example, the connections the DAGs use, the WAL spool shared
by the HMS server and the database-host worker, no credential in the file, pinned images,
healthchecks, and the image's base, packages and user. The last test feeds broken copies to the
same checks, so that each one is seen to fail."""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from compose_checks import (
    AIRFLOW_COMMON,
    COMMITTED_POLICY,
    COMPOSE_FILE,
    COMPOSE_POLICY,
    COMPOSE_SCHEMA,
    CONNECTION_SHAPES,
    DBHOST_WORKER,
    DEPLOY_DIR,
    DOCKERFILE,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    HMS_SERVICE,
    MINIO_INIT,
    REPO_ROOT,
    SANDBOX_DIR,
    SANDBOX_PACKAGE,
    command_words,
    connection_problems,
    dockerfile_problems,
    dockerignore_problems,
    environment,
    healthcheck_problems,
    image_problems,
    interpolate,
    key_paths,
    load_compose_schema,
    local_file_problems,
    mounts,
    policy_connection_ids,
    read_env_file,
    sandbox_copy_problems,
    sandbox_mount_problems,
    schema_problems,
    secret_literal_problems,
    service_problems,
    services,
    spool_problems,
    strings,
    variable_problems,
    volume_problems,
)

from hms_dr.policy import load_policy

# Made up per run: no password of a test is a literal in the code.
SMTP_RELAY_PASSWORD = secrets.token_urlsafe(12)
MADE_UP_PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    try:
        return load_compose_schema(COMPOSE_SCHEMA)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose_policy_data() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_POLICY.read_text(encoding="utf-8"))


def required_connection_ids() -> list[str]:
    """Every connection the DAGs and tasks use: each connection the compose policy names (for the
    channels it turns on), the tasks' connection constants, and every connection the sandbox
    defines for them."""
    ids = policy_connection_ids(load_policy(COMPOSE_POLICY))
    constant = re.compile(r'^[A-Z_]*CONNECTION[A-Z_]*\s*(?::\s*\w+\s*)?=\s*"([a-z0-9_]+)"', re.MULTILINE)
    for module in sorted((REPO_ROOT / "plugins" / "hms_dr" / "tasks").glob("*.py")):
        ids |= set(constant.findall(module.read_text(encoding="utf-8")))
    sandbox_env = (REPO_ROOT / "sandbox" / "hms_sandbox" / "airflow_env.py").read_text(encoding="utf-8")
    ids |= {name.lower() for name in re.findall(r'"AIRFLOW_CONN_([A-Z0-9_]+)"', sandbox_env)}
    return sorted(ids)


# ------------------------------------------------------------------ the compose file


def test_compose_file_is_valid_against_the_compose_specification(compose, compose_schema):
    assert schema_problems(compose, compose_schema) == []


def test_every_service_of_the_layout_is_present(compose):
    assert service_problems(compose) == []


def test_every_local_file_the_compose_file_references_exists(compose):
    assert local_file_problems(compose, REPO_ROOT) == []


def test_every_named_volume_is_declared_and_used(compose):
    assert volume_problems(compose) == []


def test_every_variable_has_a_line_in_env_example_and_credentials_are_required(compose, example):
    assert variable_problems(compose, example) == []


def test_every_connection_the_dags_use_is_defined_for_every_worker(compose):
    ids = required_connection_ids()
    # The discovery itself: the policy's, the restore test's and the sandbox's connections.
    assert {
        "hms_postgres",
        "hms_replication",
        "hms_storage",
        "hms_offsite",
        "hms_backup_encryption",
        "hms_restore_key",
        "hms_restore_target",
        "hms_admin",
    } <= set(ids)
    assert connection_problems(compose, ids) == []
    assert set(ids) <= set(CONNECTION_SHAPES), "add the new connection's shape to CONNECTION_SHAPES"


def test_no_credential_is_written_in_the_compose_file(compose):
    assert secret_literal_problems(compose) == []


def test_every_image_is_pinned(compose):
    assert image_problems(compose) == []


def test_databases_redis_minio_and_the_api_server_have_healthchecks(compose):
    assert healthcheck_problems(compose) == []


def test_the_wal_spool_is_shared_by_the_hms_server_and_the_database_host_worker(compose):
    policy = load_policy(COMPOSE_POLICY)
    assert policy.wal is not None
    assert spool_problems(compose, str(policy.wal.spool_dir), policy.wal.spool_queue) == []
    worker = services(compose)[DBHOST_WORKER]
    assert command_words(worker) == ["celery", "worker", "-q", policy.wal.spool_queue]
    assert "pitr-data" in {m.source for m in mounts(worker) if m.kind == "volume"}


def test_the_hms_server_is_built_like_the_sandbox_builds_it(compose):
    from hms_sandbox.hmsdb import _LOAD_SETTINGS, LOAD_FILES

    hms = services(compose)[HMS_SERVICE]
    env = environment(hms)
    assert "--data-checksums" in env["POSTGRES_INITDB_ARGS"].split()
    targets = {m.target: m.source for m in mounts(hms) if m.kind == "bind"}
    assert targets["/docker-entrypoint-initdb.d"] == "./deploy/hms-postgres/initdb"
    assert targets[f"{env['HMS_DR_INCLUDE']}/postgres"] == "./include/postgres"
    assert targets[f"{env['HMS_DR_INCLUDE']}/sql/hms"] == "./include/sql/hms"
    loader = (DEPLOY_DIR / "hms-postgres" / "initdb" / "20-hms-database.sh").read_text(encoding="utf-8")
    assert re.findall(r"^\\i (\S+)$", loader, re.MULTILINE) == ["roles.sql", *LOAD_FILES]
    for name, value in _LOAD_SETTINGS:
        assert f"set_config('{name}', '{value}', true)" in loader
    archiving = (DEPLOY_DIR / "hms-postgres" / "initdb" / "10-hms-archiving.sh").read_text(encoding="utf-8")
    assert "postgresql.hms.conf" in archiving and "archive_wal.sh" in archiving
    assert re.search(r"^host\s+replication\s+hms_replica\s+samenet\s+scram-sha-256$", archiving, re.MULTILINE)


def test_no_production_service_mounts_the_sandbox(compose):
    # The development sandbox is its own package beside plugins/ (which every Airflow container
    # mounts); the check is not vacuous: the sandbox is there, and plugins/ is mounted.
    assert (SANDBOX_DIR / SANDBOX_PACKAGE / "__init__.py").is_file()
    assert not (REPO_ROOT / "plugins" / "hms_dr" / "sandbox").exists()
    assert "./plugins" in {m.source for m in mounts(services(compose)["airflow-worker"]) if m.kind == "bind"}
    assert sandbox_mount_problems(compose, REPO_ROOT) == []


def test_the_compose_policy_is_valid_and_keeps_step_with_the_committed_policy(compose, compose_policy_data):
    policy = load_policy(COMPOSE_POLICY)
    committed = yaml.safe_load(COMMITTED_POLICY.read_text(encoding="utf-8"))
    ours, theirs = key_paths(compose_policy_data), key_paths(committed)
    assert (sorted(theirs - ours), sorted(ours - theirs)) == ([], []), (
        "deploy/policy.compose.yaml must have the keys of include/policy.yaml: (missing there, extra there)"
    )
    minio_env = environment(services(compose)[MINIO_INIT])
    assert policy.store.primary_url == f"s3://{minio_env['HMS_PRIMARY_BUCKET']}"
    assert policy.store.offsite_url == f"s3://{minio_env['HMS_OFFSITE_BUCKET']}"
    # The bucket's default lock is the lock hms_offsite_sync gives each upload, and never outlives
    # the offsite retention (or expired copies could not be deleted).
    lock_days = policy.offsite.object_lock_days
    assert int(minio_env["HMS_OFFSITE_RETENTION_DAYS"]) == lock_days <= policy.retention.offsite_days
    common = compose[AIRFLOW_COMMON]
    policy_mounts = {m.target: m.source for m in mounts(common)}
    assert policy_mounts[environment(common)["HMS_DR_POLICY"]] == "./deploy/policy.compose.yaml"


def test_minio_init_locks_the_offsite_bucket():
    script = (DEPLOY_DIR / "minio" / "init-buckets.sh").read_text(encoding="utf-8")
    assert re.search(r'^mc mb --ignore-existing --with-lock "hms/\$HMS_OFFSITE_BUCKET"$', script, re.MULTILINE)
    assert re.search(r"^mc retention set --default COMPLIANCE .*\$HMS_OFFSITE_BUCKET", script, re.MULTILINE)


def test_deploy_scripts_are_executable_and_parse():
    scripts = sorted(DEPLOY_DIR.rglob("*.sh"))
    assert len(scripts) >= 5
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script} is not executable (chmod 0755)"
        shell = (
            "bash"
            if script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
            or script.read_text(encoding="utf-8").startswith("#!/bin/bash")
            else "sh"
        )
        checked = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{script}: {checked.stderr}"


# ------------------------------------------------------------------ the Dockerfile


def test_the_dockerfile_builds_on_airflow_3_3_2_with_the_tools_and_ends_as_airflow():
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8"), REPO_ROOT) == []


def test_the_image_does_not_copy_the_sandbox():
    assert sandbox_copy_problems(DOCKERFILE.read_text(encoding="utf-8"), REPO_ROOT) == []
    assert dockerignore_problems(DOCKERIGNORE.read_text(encoding="utf-8")) == []
    assert dockerignore_problems(DOCKERIGNORE.read_text(encoding="utf-8").replace("\nsandbox\n", "\n")) != []


# ------------------------------------------------------------------ .env, written by deploy/new-env.sh


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_new_env_fills_every_variable_and_gives_working_connections(tmp_path, compose):
    policy_copy = tmp_path / "policy.compose.yaml"
    shutil.copyfile(COMPOSE_POLICY, policy_copy)
    env_file = tmp_path / ".env"
    run = subprocess.run(
        ["bash", str(DEPLOY_DIR / "new-env.sh"), "--output", str(env_file), "--policy", str(policy_copy)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HMS_SMTP_LOGIN": "alerts", "HMS_SMTP_PASSWORD": SMTP_RELAY_PASSWORD},
    )
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env_file(env_file)
    assert set(values) == set(read_env_file(ENV_EXAMPLE))
    assert all(values.values()), [name for name, value in values.items() if not value]
    assert (values["HMS_SMTP_LOGIN"], values["HMS_SMTP_PASSWORD"]) == ("alerts", SMTP_RELAY_PASSWORD)

    # Every ${VAR:?...} is satisfied, and every connection is JSON that Airflow can read.
    for _path, value in strings(compose):
        interpolate(value, values)
    common = environment(compose[AIRFLOW_COMMON])
    connections = {
        name: json.loads(interpolate(value, values))
        for name, value in common.items()
        if name.startswith("AIRFLOW_CONN_")
    }
    public_key = connections["AIRFLOW_CONN_HMS_BACKUP_ENCRYPTION"]["extra"]["public_key"]
    private_key = connections["AIRFLOW_CONN_HMS_RESTORE_KEY"]["extra"]["private_key"]
    assert public_key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    assert private_key.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----\n")
    assert connections["AIRFLOW_CONN_HMS_RESTORE_KEY"]["password"] == values["HMS_RESTORE_KEY_PASSPHRASE"]

    # The policy copy now names the new key, and still loads.
    fingerprint = re.search(r"gpg key ([0-9A-F]{40})", run.stdout)
    assert fingerprint, run.stdout
    assert load_policy(policy_copy).encryption.key_id == fingerprint.group(1)

    again = subprocess.run(
        ["bash", str(DEPLOY_DIR / "new-env.sh"), "--output", str(env_file), "--policy", str(policy_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode != 0 and "exists" in again.stderr


def test_a_missing_secret_stops_compose_naming_it(compose):
    value = environment(compose[AIRFLOW_COMMON])["AIRFLOW_CONN_HMS_POSTGRES"]
    with pytest.raises(KeyError, match="HMS_BACKUP_PASSWORD"):
        interpolate(value, {"HMS_BACKUP_PASSWORD": ""})


# ------------------------------------------------------------------ each check can fail


def _all_envs(data: dict[str, Any]) -> list[dict[str, Any]]:
    holders = [data[AIRFLOW_COMMON], *services(data).values()]
    return [h["environment"] for h in holders if isinstance(h.get("environment"), dict)]


def _drop_connection(data: dict[str, Any]) -> None:
    for env in _all_envs(data):
        env.pop("AIRFLOW_CONN_HMS_RESTORE_TARGET", None)


def _literal_password(data: dict[str, Any]) -> None:
    env = data[AIRFLOW_COMMON]["environment"]
    env["AIRFLOW_CONN_HMS_POSTGRES"] = re.sub(
        r"\$\{HMS_BACKUP_PASSWORD:\?[^}]*\}", MADE_UP_PASSWORD, env["AIRFLOW_CONN_HMS_POSTGRES"]
    )


def _literal_url_password(data: dict[str, Any]) -> None:
    data[AIRFLOW_COMMON]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = (
        "postgresql+psycopg2://airflow:airflow@airflow-postgres/airflow"
    )


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[str]) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _unmount_spool(data: dict[str, Any]) -> None:
    worker = services(data)[DBHOST_WORKER]
    worker["volumes"] = [v for v in worker["volumes"] if "wal-spool" not in v]


def _add_env(service: str, name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        services(data)[service]["environment"][name] = value

    return mutate


def _mount(service: str, volume: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        services(data)[service]["volumes"] = [*services(data)[service]["volumes"], volume]

    return mutate


def _spool_policy(data: dict[str, Any]) -> list[str]:
    policy = load_policy(COMPOSE_POLICY)
    assert policy.wal is not None
    return spool_problems(data, str(policy.wal.spool_dir), policy.wal.spool_queue)


BROKEN_COMPOSE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "ports not a list": (_set(["services", "redis", "ports"], "6379"), "schema"),
    "unknown service key": (_set(["services", "redis", "imagee"], "redis:7"), "schema"),
    "restore target missing": (_delete(["services", "hms-restore-target"]), "services"),
    "bind mount of a missing file": (
        _set(["services", MINIO_INIT, "volumes"], ["./deploy/minio/no-such-script.sh:/x.sh:ro"]),
        "files",
    ),
    "missing build file": (_set([AIRFLOW_COMMON, "build", "dockerfile"], "Dockerfile.nope"), "files"),
    "undeclared volume": (_delete(["volumes", "wal-spool"]), "volumes"),
    "unused volume": (_set(["volumes", "orphan"], None), "volumes"),
    "undocumented variable": (_add_env("redis", "FOO", "${HMS_NOT_IN_EXAMPLE:-x}"), "variables"),
    "credential with a default": (_add_env("redis", "REDIS_PASSWORD", "${REDIS_PASSWORD:-changeme}"), "variables"),
    "variable without default": (_add_env("redis", "FOO", "${AIRFLOW_UI_PORT}"), "variables"),
    "connection missing": (_drop_connection, "connections"),
    "connection of the wrong type": (
        _set([AIRFLOW_COMMON, "environment", "AIRFLOW_CONN_HMS_STORAGE"], '{"conn_type":"postgres"}'),
        "connections",
    ),
    "connection not JSON": (
        _set([AIRFLOW_COMMON, "environment", "AIRFLOW_CONN_HMS_OFFSITE"], "aws://x"),
        "connections",
    ),
    "literal connection password": (_literal_password, "secrets"),
    "literal URL password": (_literal_url_password, "secrets"),
    "literal credential variable": (_add_env("minio", "MINIO_ROOT_PASSWORD", "minio123"), "secrets"),
    "image latest": (_set(["services", "redis", "image"], "redis:latest"), "images"),
    "image untagged": (_set(["services", "minio", "image"], "quay.io/minio/minio"), "images"),
    "no healthcheck": (_delete(["services", "minio", "healthcheck"]), "healthchecks"),
    "spool not mounted by the worker": (_unmount_spool, "spool"),
    "worker on the default queue": (_set(["services", DBHOST_WORKER, "command"], "celery worker"), "spool"),
    "archive_command elsewhere": (_add_env(HMS_SERVICE, "HMS_WAL_SPOOL_DIR", "/tmp/spool"), "spool"),
    "sandbox mounted": (_mount("airflow-worker", "./sandbox:/opt/airflow/sandbox:ro"), "sandbox"),
    "sandbox package mounted": (
        _mount("airflow-scheduler", "./sandbox/hms_sandbox:/opt/airflow/plugins/hms_sandbox:ro"),
        "sandbox",
    ),
    "repository mounted": (_mount(DBHOST_WORKER, "./:/opt/hms-dr:ro"), "sandbox"),
    "sandbox on PYTHONPATH": (
        _add_env("airflow-worker", "PYTHONPATH", "/opt/airflow/plugins:/opt/airflow/sandbox"),
        "sandbox",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_COMPOSE))
def test_the_checks_catch_a_broken_compose_file(case, compose, compose_schema, example):
    mutate, check = BROKEN_COMPOSE[case]
    broken = copy.deepcopy(compose)
    mutate(broken)
    checks: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "schema": lambda d: schema_problems(d, compose_schema),
        "services": service_problems,
        "files": lambda d: local_file_problems(d, REPO_ROOT),
        "volumes": volume_problems,
        "variables": lambda d: variable_problems(d, example),
        "connections": lambda d: connection_problems(d, required_connection_ids()),
        "secrets": secret_literal_problems,
        "images": image_problems,
        "healthchecks": healthcheck_problems,
        "spool": _spool_policy,
        "sandbox": lambda d: sandbox_mount_problems(d, REPO_ROOT),
    }
    assert checks[check](compose) == [], "the real file must pass the check this case breaks"
    assert checks[check](broken) != []


BROKEN_DOCKERFILE = {
    "another base": ("FROM apache/airflow:3.3.2-python3.11", "FROM apache/airflow:2.10.5"),
    "ends as root": (
        "COPY --chown=airflow:0 include/ /opt/airflow/include/\nUSER airflow",
        "COPY --chown=airflow:0 include/ /opt/airflow/include/\nUSER airflow\nUSER root",
    ),
    "no zstd": ("        zstd; \\", "        ; \\"),
    "no constraints": ("-c /opt/hms-dr/constraints.txt", ""),
    "missing COPY source": ("COPY --chown=airflow:0 include/", "COPY --chown=airflow:0 includes/"),
    "copies the sandbox": (
        "COPY --chown=airflow:0 include/ /opt/airflow/include/",
        "COPY --chown=airflow:0 include/ sandbox/ /opt/airflow/include/",
    ),
    "copies the whole context": (
        "COPY --chown=airflow:0 include/ /opt/airflow/include/",
        "COPY --chown=airflow:0 . /opt/hms-dr/\nCOPY --chown=airflow:0 include/ /opt/airflow/include/",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_DOCKERFILE))
def test_the_dockerfile_check_catches_a_broken_dockerfile(case):
    text = DOCKERFILE.read_text(encoding="utf-8")
    old, new = BROKEN_DOCKERFILE[case]
    assert old in text
    assert dockerfile_problems(text.replace(old, new), REPO_ROOT) != []


def test_a_missing_compose_schema_is_an_error_naming_its_path(tmp_path):
    """Without the vendored schema the schema test fails (the fixture turns this error into
    pytest.fail), it never skips."""
    with pytest.raises(FileNotFoundError, match=r"compose-spec\.json is missing"):
        load_compose_schema(tmp_path / "compose-spec.json")
