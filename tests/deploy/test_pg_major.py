"""One PostgreSQL major for the whole compose deployment, chosen by HMS_PG_MAJOR (default 15):
the image's build argument PG_MAJOR, the package names, the PGDG repository for majors Debian 12
does not ship, both PostgreSQL services' images and data directories, and the hms-postgres
entrypoint's refusal to start beside another major's cluster.

Without a Docker engine: the Dockerfile's install RUN is executed by sh with every absolute path
moved under a temporary root and apt-get, groupadd, useradd, gpg and zstd replaced by stubs that
record their arguments (the apt-get stub, like Debian 12's archive, knows postgresql-15 only
until the PGDG sources are in place and apt-get update has run)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_checks import (
    AIRFLOW_COMMON,
    COMPOSE_FILE,
    DEFAULT_PG_MAJOR,
    DEPLOY_DIR,
    DOCKERFILE,
    ENV_EXAMPLE,
    HMS_SERVICE,
    PG_MAJOR_ARG,
    PG_MAJOR_VARIABLE,
    PG_SERVICES,
    PGDG_SETUP,
    REQUIRED_APT_PACKAGES,
    apt_packages,
    dockerfile_args,
    dockerfile_instructions,
    dockerfile_problems,
    install_script,
    interpolated,
    pg_major_dockerfile_problems,
    pg_major_problems,
    read_env_file,
    services,
)

ENTRYPOINT = DEPLOY_DIR / "hms-postgres" / "entrypoint.sh"
# Real programs the install script and the entrypoint may run; everything else is a stub or absent.
REAL_TOOLS = ("sh", "mkdir", "rm", "head", "cat", "chmod", "dirname", "basename", "id", "touch")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def _tool_dir(path: Path, stubs: dict[str, str]) -> Path:
    """A PATH directory holding only the real tools of REAL_TOOLS and the given stub scripts."""
    path.mkdir(parents=True)
    for name in REAL_TOOLS:
        real = shutil.which(name)
        assert real, f"{name} is not installed"
        (path / name).symlink_to(real)
    for name, body in stubs.items():
        (path / name).write_text("#!/bin/sh\n" + body, encoding="utf-8")
        (path / name).chmod(0o755)
    return path


# ------------------------------------------------------------------ the Dockerfile


# apt-get as Debian 12 answers it: every package of its archive installs, but postgresql-N and
# postgresql-client-N only for N=15 until pgdg.sources exists and apt-get update has read it.
# Installing postgresql-common brings the PGDG set-up script (which, like the real one, writes
# pgdg.sources and runs apt-get update); installing postgresql-N brings its bin/ tools.
APT_GET = r"""echo "apt-get $*" >> "$DRYRUN_LOG"
sources=$DRYRUN_ROOT/etc/apt/sources.list.d/pgdg.sources
case $1 in
update) [ -f "$sources" ] && touch "$DRYRUN_ROOT/pgdg-updated"; exit 0 ;;
install) ;;
*) exit 0 ;;
esac
shift
for package in "$@"; do
    case $package in
    -*) continue ;;
    postgresql-common)
        mkdir -p "$DRYRUN_ROOT/usr/share/postgresql-common/pgdg"
        script=$DRYRUN_ROOT/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh
        printf '%s\n' '#!/bin/sh' 'echo "pgdg-setup $*" >> "$DRYRUN_LOG"' \
            'mkdir -p "$DRYRUN_ROOT/etc/apt/sources.list.d"' \
            'echo "Types: deb" > "$DRYRUN_ROOT/etc/apt/sources.list.d/pgdg.sources"' \
            'exec apt-get update' > "$script"
        chmod 0755 "$script" ;;
    postgresql-[0-9]*|postgresql-client-[0-9]*)
        major=${package##*-}
        if [ "$major" != 15 ] && [ ! -f "$DRYRUN_ROOT/pgdg-updated" ]; then
            echo "E: Unable to locate package $package" >&2
            exit 100
        fi
        mkdir -p "$DRYRUN_ROOT/usr/lib/postgresql/$major/bin"
        for tool in pg_dump initdb; do
            printf '#!/bin/sh\necho "%s (PostgreSQL) %s.0"\n' "$tool" "$major" \
                > "$DRYRUN_ROOT/usr/lib/postgresql/$major/bin/$tool"
            chmod 0755 "$DRYRUN_ROOT/usr/lib/postgresql/$major/bin/$tool"
        done ;;
    esac
done
"""
LOGGING_STUB = 'echo "$(basename "$0") $*" >> "$DRYRUN_LOG"\n'


@dataclass
class DryRun:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]


def dry_run(tmp_path: Path, script: str, major: str, codename: str = "bookworm") -> DryRun:
    """The install RUN's shell with its absolute paths under tmp_path/root and the stubs above."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(
        f'PRETTY_NAME="Debian GNU/Linux ({codename})"\nVERSION_CODENAME={codename}\n', encoding="utf-8"
    )
    moved = re.sub(r"(?<![\w.$}/-])/(etc|usr|var)/", lambda m: f"{root}/{m.group(1)}/", script)
    # Nothing outside the temporary root is touched (useradd's login shell is only an argument).
    outside = [p for p in re.findall(r"(?<![\w.$}-])/[\w./*-]+", moved) if not p.startswith(f"{root}/")]
    assert set(outside) <= {"/bin/bash"}, outside
    log = tmp_path / "calls.log"
    log.touch()
    stubs = {"apt-get": APT_GET, "groupadd": LOGGING_STUB, "useradd": LOGGING_STUB}
    stubs["gpg"] = LOGGING_STUB + 'echo "gpg (GnuPG) 2.2.40"\n'
    stubs["zstd"] = LOGGING_STUB + 'echo "*** Zstandard CLI v1.5.4"\n'
    tools = _tool_dir(tmp_path / "bin", stubs)
    env = {"PATH": str(tools), "PG_MAJOR": major, "PG_UID": "999", "DRYRUN_ROOT": str(root), "DRYRUN_LOG": str(log)}
    run = subprocess.run(["sh", "-c", moved], capture_output=True, text=True, env=env, timeout=60, check=False)
    return DryRun(run.returncode, run.stdout, run.stderr, log.read_text(encoding="utf-8").splitlines())


def test_the_build_argument_defaults_to_15_and_names_the_packages(dockerfile):
    instructions = dockerfile_instructions(dockerfile)
    assert dockerfile_args(instructions)[PG_MAJOR_ARG] == DEFAULT_PG_MAJOR == "15"
    packages = apt_packages(instructions)
    assert {"postgresql-${PG_MAJOR}", "postgresql-client-${PG_MAJOR}"} <= packages
    assert set(REQUIRED_APT_PACKAGES) <= packages
    assert not [p for p in packages if re.fullmatch(r"postgresql(-client)?-\d+", p)]
    assert pg_major_dockerfile_problems(dockerfile) == []


def test_major_15_installs_from_debian_without_the_pgdg_repository(tmp_path, dockerfile):
    run = dry_run(tmp_path, install_script(dockerfile), "15")
    assert run.returncode == 0, run.stderr
    assert not [c for c in run.calls if "pgdg" in c or "postgresql-common" in c]
    installs = [c for c in run.calls if c.startswith("apt-get install")]
    assert installs == ["apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 gnupg zstd"]
    # The build log names the tools of the chosen major.
    assert "pg_dump (PostgreSQL) 15.0" in run.stdout and "initdb (PostgreSQL) 15.0" in run.stdout
    assert "groupadd --system --gid 999 postgres" in run.calls
    cluster_conf = tmp_path / "root" / "etc" / "postgresql-common" / "createcluster.d" / "hms-dr.conf"
    assert cluster_conf.read_text(encoding="utf-8").strip() == "create_main_cluster = false"


@pytest.mark.parametrize("major", ["13", "16", "18"])
def test_another_major_adds_the_pgdg_repository_before_installing(tmp_path, dockerfile, major):
    run = dry_run(tmp_path, install_script(dockerfile), major)
    assert run.returncode == 0, run.stderr
    setup = "pgdg-setup -y"
    assert setup in run.calls
    install = f"apt-get install -y --no-install-recommends postgresql-{major} postgresql-client-{major} gnupg zstd"
    assert install in run.calls
    common = next(i for i, c in enumerate(run.calls) if c.startswith("apt-get install") and "postgresql-common" in c)
    assert common < run.calls.index(setup) < run.calls.index(install)
    assert f"pg_dump (PostgreSQL) {major}.0" in run.stdout
    assert (tmp_path / "root" / "usr" / "lib" / "postgresql" / major / "bin" / "initdb").is_file()


def test_without_the_pgdg_step_another_major_fails_to_install(tmp_path, dockerfile):
    """The stub is strict enough to tell: drop the PGDG set-up and 18 is not found."""
    script = install_script(dockerfile)
    assert PGDG_SETUP in script
    broken = re.sub(r"if \[ \"\$\{PG_MAJOR\}\" != 15 \]; then .*? fi;", "", script, count=1)
    assert PGDG_SETUP not in broken
    run = dry_run(tmp_path, broken, "18")
    assert run.returncode != 0
    assert "Unable to locate package postgresql-18" in run.stderr


@pytest.mark.parametrize(
    ("major", "codename", "message"),
    [
        ("12", "bookworm", "PG_MAJOR=12: hms-dr supports PostgreSQL 13 and later"),
        ("9", "bookworm", "PG_MAJOR=9: hms-dr supports PostgreSQL 13 and later"),
        ("eighteen", "bookworm", "PG_MAJOR must be a PostgreSQL major version such as 15 or 18, not 'eighteen'"),
        ("", "bookworm", "PG_MAJOR must be a PostgreSQL major version such as 15 or 18, not ''"),
        ("15", "trixie", "expected Debian 12 (bookworm), found Debian GNU/Linux (trixie)"),
    ],
)
def test_the_build_refuses_an_unsupported_major_or_release_in_one_line(tmp_path, dockerfile, major, codename, message):
    run = dry_run(tmp_path, install_script(dockerfile), major, codename)
    assert run.returncode != 0
    messages = [line for line in run.stderr.splitlines() if not line.startswith("+")]
    assert len(messages) == 1 and messages[0].startswith(message), run.stderr
    assert not [c for c in run.calls if c.startswith(("apt-get", "groupadd"))]


BROKEN_DOCKERFILE = {
    "no build argument": ("ARG PG_MAJOR=15\n", ""),
    "another default": ("ARG PG_MAJOR=15\n", "ARG PG_MAJOR=16\n"),
    "pinned package": ("        postgresql-${PG_MAJOR} \\", "        postgresql-15 \\"),
    "pinned version check": (
        "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump --version",
        "/usr/lib/postgresql/15/bin/pg_dump --version",
    ),
    "HMS_DR_PG_BIN again": (
        "    zstd --version\n",
        "    zstd --version\nENV HMS_DR_PG_BIN=/usr/lib/postgresql/15/bin\n",
    ),
    "no PGDG repository": (f"        {PGDG_SETUP} -y; \\\n", ""),
}


@pytest.mark.parametrize("case", sorted(BROKEN_DOCKERFILE))
def test_the_major_checks_catch_a_broken_dockerfile(case, dockerfile):
    old, new = BROKEN_DOCKERFILE[case]
    assert old in dockerfile
    assert pg_major_dockerfile_problems(dockerfile.replace(old, new)) != []
    assert dockerfile_problems(dockerfile.replace(old, new), DOCKERFILE.parent) != []


# ------------------------------------------------------------------ docker-compose.yaml


def test_hms_pg_major_defaults_to_15_in_compose_and_in_the_env_example(compose):
    data = interpolated(compose, {})
    assert data[AIRFLOW_COMMON]["build"]["args"][PG_MAJOR_ARG] == "15"
    assert {name: services(data)[name]["image"] for name in PG_SERVICES} == {
        HMS_SERVICE: "postgres:15-bookworm",
        "hms-restore-target": "postgres:15-bookworm",
    }
    assert read_env_file(ENV_EXAMPLE)[PG_MAJOR_VARIABLE] == "15"
    # Airflow's own metadata database is not hms-dr's to choose.
    assert services(data)["airflow-postgres"]["image"] == "postgres:16-bookworm"


@pytest.mark.parametrize("major", ["13", "15", "17", "18"])
def test_hms_pg_major_drives_the_build_and_both_postgresql_services(compose, major):
    env = {PG_MAJOR_VARIABLE: major}
    assert pg_major_problems(compose, env) == []
    data = interpolated(compose, env)
    assert data[AIRFLOW_COMMON]["build"]["args"][PG_MAJOR_ARG] == major
    assert data[AIRFLOW_COMMON]["image"].endswith(f"-pg{major}")
    for name in PG_SERVICES:
        service = services(data)[name]
        assert service["image"] == f"postgres:{major}-bookworm"
        assert service["environment"]["PGDATA"] == f"/var/lib/postgresql/{major}/docker"
        assert [v for v in service["volumes"] if v.endswith(":/var/lib/postgresql")]


def test_no_service_still_pins_postgresql_15(compose):
    """With HMS_PG_MAJOR=18 nothing of hms-dr's mentions 15 any more."""
    data = interpolated(compose, {PG_MAJOR_VARIABLE: "18"})
    text = yaml.safe_dump({k: v for k, v in data.items() if k != "services"}) + yaml.safe_dump(
        {k: v for k, v in services(data).items() if k != "airflow-postgres"}
    )
    # A 15 that is no duration (15s, 15m) and no part of another number or version.
    assert not re.findall(r".*(?<![\d.])15(?![\d.]|[sm]\b).*", text)
    assert "HMS_DR_PG_BIN" not in text


def test_the_wal_spool_is_beside_the_data_directory_not_in_it(compose):
    for major in ("15", "18"):
        hms = services(interpolated(compose, {PG_MAJOR_VARIABLE: major}))[HMS_SERVICE]
        spool = hms["environment"]["HMS_WAL_SPOOL_DIR"]
        pgdata = Path(hms["environment"]["PGDATA"])
        assert Path(spool) not in (pgdata, *pgdata.parents) and pgdata not in Path(spool).parents
        assert f"wal-spool:{spool}" in hms["volumes"]


def _set_image(service: str, image: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        services(data)[service]["image"] = image

    return mutate


def _mount_at(service: str, target: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        volumes = services(data)[service]["volumes"]
        services(data)[service]["volumes"] = [
            v.replace(":/var/lib/postgresql", f":{target}") if v.endswith(":/var/lib/postgresql") else v
            for v in volumes
        ]

    return mutate


def _env(holder: str, name: str, value: str | None) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        env = data[holder]["environment"] if holder == AIRFLOW_COMMON else services(data)[holder]["environment"]
        if value is None:
            env.pop(name)
        else:
            env[name] = value

    return mutate


def _drop_build_arg(data: dict[str, Any]) -> None:
    del data[AIRFLOW_COMMON]["build"]["args"][PG_MAJOR_ARG]


def _untagged_image(data: dict[str, Any]) -> None:
    data[AIRFLOW_COMMON]["image"] = "${HMS_DR_IMAGE:-hms-dr/airflow:3.3.2-1}"


BROKEN_COMPOSE: dict[str, Callable[[dict[str, Any]], None]] = {
    "restore target pinned to 15": _set_image("hms-restore-target", "postgres:15-bookworm"),
    "hms-postgres pinned to 15": _set_image(HMS_SERVICE, "postgres:15-bookworm"),
    "no build argument": _drop_build_arg,
    "image tag without the major": _untagged_image,
    "data volume at the old PGDATA": _mount_at(HMS_SERVICE, "/var/lib/postgresql/data"),
    "restore volume at PGDATA itself": _mount_at(
        "hms-restore-target", "/var/lib/postgresql/${HMS_PG_MAJOR:-15}/docker"
    ),
    "PGDATA unset": _env(HMS_SERVICE, "PGDATA", None),
    "PGDATA pinned": _env("hms-restore-target", "PGDATA", "/var/lib/postgresql/15/docker"),
    "HMS_DR_PG_BIN pinned": _env(AIRFLOW_COMMON, "HMS_DR_PG_BIN", "/usr/lib/postgresql/15/bin"),
    "another major's bin": _env(AIRFLOW_COMMON, "HMS_DR_PG_BIN_15", "/usr/lib/postgresql/15/bin"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_COMPOSE))
def test_the_major_check_catches_a_broken_compose_file(case, compose):
    broken = copy.deepcopy(compose)
    BROKEN_COMPOSE[case](broken)
    assert pg_major_problems(broken, {PG_MAJOR_VARIABLE: "18"}) != []


# ------------------------------------------------------------------ the hms-postgres entrypoint


def run_entrypoint(
    tmp_path: Path, major: str, pgdata: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """deploy/hms-postgres/entrypoint.sh with the image's entrypoint and chown as stubs."""
    log = tmp_path / "calls.log"
    log.touch()
    tools = _tool_dir(
        tmp_path / "bin",
        {"docker-entrypoint.sh": 'echo "docker-entrypoint.sh $*" >> "$DRYRUN_LOG"\n', "chown": LOGGING_STUB},
    )
    volume = tmp_path / "volume"
    env = {
        "PATH": str(tools),
        "PG_MAJOR": major,
        "PGDATA": str(pgdata or volume / major / "docker"),
        "HMS_WAL_SPOOL_DIR": str(volume / "wal-spool"),
        "DRYRUN_LOG": str(log),
    }
    run = subprocess.run(["sh", str(ENTRYPOINT), "postgres"], capture_output=True, text=True, env=env, timeout=30)
    return run, log


def _cluster(directory: Path, major: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "PG_VERSION").write_text(f"{major}\n", encoding="utf-8")


@pytest.mark.parametrize("existing", [None, "same major"])
def test_the_entrypoint_hands_over_on_a_fresh_volume_and_on_its_own_cluster(tmp_path, existing):
    if existing:
        _cluster(tmp_path / "volume" / "18" / "docker", "18")
    run, log = run_entrypoint(tmp_path, "18")
    assert run.returncode == 0, run.stderr
    assert log.read_text(encoding="utf-8").splitlines()[-1] == "docker-entrypoint.sh postgres"
    assert (tmp_path / "volume" / "wal-spool").is_dir()


@pytest.mark.parametrize(
    ("cluster", "version", "major", "message"),
    [
        (
            "15/docker",
            "15",
            "18",
            "holds a PostgreSQL 15 cluster; this server (PostgreSQL 18) would create a new, empty one",
        ),
        (
            "18/docker",
            "18",
            "15",
            "holds a PostgreSQL 18 cluster; this server (PostgreSQL 15) would create a new, empty one",
        ),
        ("", "15", "15", "holds this major's cluster in the old layout"),
        ("data", "17", "18", "holds a PostgreSQL 17 cluster; this server (PostgreSQL 18)"),
    ],
)
def test_the_entrypoint_refuses_to_start_beside_another_cluster(tmp_path, cluster, version, major, message):
    _cluster(tmp_path / "volume" / cluster, version)
    run, log = run_entrypoint(tmp_path, major)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr
    assert "docker-entrypoint.sh" not in log.read_text(encoding="utf-8")


def test_the_entrypoint_refuses_a_pgdata_outside_the_layout(tmp_path):
    run, log = run_entrypoint(tmp_path, "15", pgdata=tmp_path / "volume" / "data")
    assert run.returncode != 0 and "is not <volume>/15/docker" in run.stderr
    assert "docker-entrypoint.sh" not in log.read_text(encoding="utf-8")


def test_compose_runs_the_entrypoint_with_the_layout_it_checks(compose):
    hms = services(interpolated(compose, {PG_MAJOR_VARIABLE: "18"}))[HMS_SERVICE]
    assert hms["entrypoint"] == ["/opt/hms-dr/deploy/hms-postgres/entrypoint.sh"]
    assert hms["environment"]["PGDATA"] == "/var/lib/postgresql/18/docker"
    assert os.access(ENTRYPOINT, os.X_OK)
