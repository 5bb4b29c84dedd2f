"""Which PostgreSQL installation serves which server: found from the environment and the Debian
layout, chosen by the two rules (client tools of the server's major or newer; server programs of
exactly the data's major). Installations here are directories of small scripts that answer
--version like PostgreSQL's programs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hms_dr.errors import PreflightFailed
from hms_dr.pginstalls import (
    PgInstall,
    choose_client_install,
    choose_data_install,
    discover_installs,
    parse_tool_version,
    server_version_major,
)


def scripted_install(bin_dir: Path, version: str, programs: tuple[str, ...] = ("pg_dump", "psql")) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in programs:
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} (PostgreSQL) {version}"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def installs(*versions: str) -> tuple[PgInstall, ...]:
    return tuple(sorted(PgInstall(int(v.split(".")[0]), v, Path(f"/pg/{v}/bin")) for v in versions))


def test_reads_versions_of_debian_and_embedded_builds() -> None:
    assert parse_tool_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n") == (15, "15.18")
    assert parse_tool_version("pg_dump (PostgreSQL) 18.6\n") == (18, "18.6")
    assert parse_tool_version("pg_restore (PostgreSQL) 16beta2") == (16, "16")
    assert server_version_major("18.6") == 18 and server_version_major("15.18 (Debian 15.18-0+deb12u1)") == 15


@pytest.mark.parametrize(
    ("server_major", "chosen"),
    [(15, "15.18"), (16, "18.6"), (17, "18.6"), (18, "18.6"), (13, "15.18")],
)
def test_client_tools_are_the_servers_major_else_the_nearest_newer(server_major: int, chosen: str) -> None:
    assert choose_client_install(server_major, installs("15.18", "18.6"), server="db:5432").version == chosen


def test_client_tools_older_than_the_server_are_refused_in_one_line_naming_both_versions() -> None:
    with pytest.raises(PreflightFailed) as caught:
        choose_client_install(18, installs("15.18"), server="the server at db:5432 (18.6)")
    message = caught.value.message
    assert "\n" not in message
    assert "18" in message and "15.18" in message and "older than the server are never used" in message
    assert "HMS_DR_PG_BIN_18" in (caught.value.hint or "")


def test_data_directories_are_opened_by_their_own_major_only() -> None:
    assert choose_data_install(15, installs("15.18", "18.6"), data="d").version == "15.18"
    with pytest.raises(PreflightFailed, match="is PostgreSQL 16 but the server programs here are"):
        choose_data_install(16, installs("15.18", "18.6"), data="base backup set X")


def test_discovery_reads_the_per_major_variables_the_legacy_one_and_the_debian_root(tmp_path: Path) -> None:
    root = tmp_path / "usr-lib-postgresql"
    scripted_install(root / "15" / "bin", "15.18")
    embedded = scripted_install(tmp_path / "embedded" / "bin", "18.6")
    legacy = scripted_install(tmp_path / "legacy" / "bin", "16.4")
    environ = {
        "HMS_DR_PG_ROOT": str(root),
        "HMS_DR_PG_BIN_18": str(embedded),
        "HMS_DR_PG_BIN": str(legacy),
        "PATH": str(tmp_path / "nothing-here"),
    }
    found = discover_installs(environ)
    assert [(i.major, i.version) for i in found] == [(15, "15.18"), (16, "16.4"), (18, "18.6")]
    assert found[-1].bin_dir == embedded.absolute()


def test_the_first_installation_found_for_a_major_wins(tmp_path: Path) -> None:
    root = tmp_path / "root"
    scripted_install(root / "18" / "bin", "18.1")
    preferred = scripted_install(tmp_path / "mine" / "bin", "18.6")
    found = discover_installs({"HMS_DR_PG_ROOT": str(root), "HMS_DR_PG_BIN_18": str(preferred), "PATH": ""})
    assert [(i.version, i.bin_dir) for i in found] == [("18.6", preferred.absolute())]


def test_a_per_major_variable_pointing_at_another_major_is_refused(tmp_path: Path) -> None:
    wrong = scripted_install(tmp_path / "wrong" / "bin", "15.18")
    with pytest.raises(PreflightFailed, match=r"HMS_DR_PG_BIN_18=.* holds PostgreSQL 15.18, not 18"):
        discover_installs({"HMS_DR_PG_BIN_18": str(wrong), "HMS_DR_PG_ROOT": str(tmp_path / "none"), "PATH": ""})


def test_a_missing_program_names_the_installation(tmp_path: Path) -> None:
    install = PgInstall(18, "18.6", scripted_install(tmp_path / "client-only" / "bin", "18.6"))
    assert install.program("pg_dump").endswith("/client-only/bin/pg_dump")
    with pytest.raises(PreflightFailed, match=r"pg_combinebackup is missing from PostgreSQL 18\.6 in"):
        install.program("pg_combinebackup")
