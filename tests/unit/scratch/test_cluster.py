"""Scratch clusters: short homes in a scratch-cluster folder, and a removal that refuses anything
else and takes the home and its own socket directory with it."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hms_dr.errors import ParamInvalid, PreflightFailed
from hms_dr.scratch.cluster import (
    ScratchCluster,
    dr_scratch_cluster,
    drill_scratch_cluster,
    free_port_in,
    remove_scratch_cluster,
)

RUN_KEY = "manual__2026_11_24t14_05_00_123456_00_00"


@pytest.fixture
def drill_cluster(tmp_path: Path) -> Iterator[ScratchCluster]:
    cluster = drill_scratch_cluster(tmp_path / "staging", "hms_restore_test_20261124t020001z_a1b2c3")
    yield cluster
    if cluster.socket_dir.exists():
        cluster.socket_dir.rmdir()


def test_a_dr_cluster_lives_in_a_short_home_under_dr_restore() -> None:
    cluster = dr_scratch_cluster(Path("/var/lib/hms-dr/pitr"), RUN_KEY)
    assert cluster.home.parent == Path("/var/lib/hms-dr/pitr/dr-restore")
    assert cluster.data_dir == cluster.home / "data" and cluster.log_file.is_relative_to(cluster.home)
    assert cluster.socket_dir.is_relative_to(cluster.home) and len(str(cluster.socket_dir)) < 90
    assert dr_scratch_cluster(Path("/var/lib/hms-dr/pitr"), RUN_KEY) == cluster  # the teardown finds it again


def test_the_drill_cluster_sits_beside_the_run_and_gets_a_private_socket_directory(
    tmp_path: Path, drill_cluster: ScratchCluster
) -> None:
    assert drill_cluster.home == tmp_path / "staging" / "restore-test" / "hms_restore_test_20261124t020001z_a1b2c3-pitr"
    assert drill_cluster.log_file == drill_cluster.home / "log" / "postgresql.log"
    assert drill_cluster.socket_dir.parent == Path(tempfile.gettempdir()) and drill_cluster.socket_dir.is_dir()
    assert drill_cluster.socket_dir.stat().st_mode & 0o777 == 0o700


def test_a_cluster_crosses_xcom_as_plain_paths(drill_cluster: ScratchCluster) -> None:
    data = drill_cluster.to_dict()
    assert ScratchCluster.from_dict(data) == drill_cluster
    # A plan written before the home was recorded (data_dir, socket_dir, log_file) still reads.
    assert ScratchCluster.from_dict({k: data[k] for k in ("data_dir", "socket_dir", "log_file")}) == drill_cluster


def test_removal_takes_the_home_and_its_own_socket_directory(drill_cluster: ScratchCluster) -> None:
    (drill_cluster.data_dir / "base").mkdir(parents=True)
    (drill_cluster.data_dir / "postmaster.pid").write_text("999999999\n")  # a server long gone
    drill_cluster.log_file.parent.mkdir()
    drill_cluster.log_file.write_text("LOG:  database system is shut down\n")
    removed = remove_scratch_cluster(drill_cluster)
    assert removed == [str(drill_cluster.home), str(drill_cluster.socket_dir)]
    assert not drill_cluster.home.exists() and not drill_cluster.socket_dir.exists()
    assert drill_cluster.home.parent.is_dir()  # the work folder stays
    assert remove_scratch_cluster(drill_cluster) == []  # again: nothing left, no error


def test_a_socket_directory_that_is_not_ours_is_left(tmp_path: Path) -> None:
    home = tmp_path / "dr-restore" / "0123456789"
    (home / "data").mkdir(parents=True)
    foreign = tmp_path / "sockets-of-someone"
    foreign.mkdir()
    remove_scratch_cluster(ScratchCluster(home, foreign, home / "log" / "server.log"))
    assert not home.exists() and foreign.is_dir()


@pytest.mark.parametrize(
    "home", ["var/lib/postgresql/15/main", "restore/0123456789", "dr-restore", "dr-restore-x/0123456789"]
)
def test_anything_outside_a_scratch_cluster_folder_is_refused_and_left_alone(tmp_path: Path, home: str) -> None:
    cluster = ScratchCluster(tmp_path / home, tmp_path / home / "sockets", tmp_path / home / "log" / "server.log")
    (cluster.data_dir).mkdir(parents=True)
    (cluster.data_dir / "PG_VERSION").write_text("15\n")
    with pytest.raises(ParamInvalid, match="not a scratch cluster directory"):
        remove_scratch_cluster(cluster)
    assert (cluster.data_dir / "PG_VERSION").exists()


def test_a_symlinked_home_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "production-data"
    real.mkdir()
    (tmp_path / "dr-restore").mkdir()
    (tmp_path / "dr-restore" / "0123456789").symlink_to(real)
    home = tmp_path / "dr-restore" / "0123456789"
    with pytest.raises(ParamInvalid, match="not a scratch cluster directory"):
        remove_scratch_cluster(ScratchCluster(home, home / "sockets", home / "log" / "server.log"))
    assert real.is_dir()


def test_the_first_free_port_of_the_range_is_chosen_and_a_full_range_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(PreflightFailed, match=f"no free port in {port}..{port}"):
            free_port_in(port, port)
        assert free_port_in(port, port + 20) != port
