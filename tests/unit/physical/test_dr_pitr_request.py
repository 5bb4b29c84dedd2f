"""hms_dr_pitr's first task: every param checked again (one line naming the bad one), the host
checked (data directory new or empty and really below an allowed root, port free), nothing
created; and the report an operator reads once the new cluster is up."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hms_dr.errors import ParamInvalid, PreflightFailed, RequestRefused
from hms_dr.physical.request import (
    check_pitr_host,
    describe_recovered_cluster,
    read_pitr_request,
    refuse_short_space,
)
from hms_dr.physical.targets import TargetKind

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ROOT = Path("/var/lib/hms-dr/pitr")
PORTS = (55432, 55532)
GOOD = {
    "target_type": "time",
    "target": "2026-11-24T14:59:00Z",
    "base_backup_id": None,
    "data_directory": "/var/lib/hms-dr/pitr/incident-42/data",
    "port": 55433,
    "promote": True,
    "reason": "DELETE without WHERE on appointments at 15:00, ticket INC-42",
}


def read(**changes: Any) -> Any:
    return read_pitr_request({**GOOD, **changes}, allowed_roots=[ROOT], port_range=PORTS, now=NOW)


def test_a_good_request_is_read_whole() -> None:
    request = read()
    assert request.target.kind is TargetKind.TIME and request.target.time == datetime(2026, 11, 24, 14, 59, tzinfo=UTC)
    assert request.data_dir == Path("/var/lib/hms-dr/pitr/incident-42/data") and request.port == 55433
    assert request.backup_set_id is None and request.promote and request.reason.startswith("DELETE")
    assert request.to_dict()["target"] == {"kind": "time", "value": "2026-11-24T14:59:00Z", "inclusive": True}


def test_empty_optional_params_mean_automatic() -> None:
    request = read(port=None, base_backup_id="automatic", target_type="latest", target="")
    assert request.port is None and request.backup_set_id is None and request.target.kind is TargetKind.LATEST


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reason": None}, "reason is required"),
        ({"reason": "  ok "}, "reason is required"),
        ({"target_type": "yesterday"}, "recovery target kind 'yesterday' is not one of"),
        ({"target": None}, "recovery target 'time' needs a value"),
        ({"target": "2026-11-24 14:59"}, "has no time zone"),
        ({"target": "2026-11-24T15:30:00Z"}, "2026-11-24T15:30:00Z is in the future (now 2026-11-24T15:00:00Z)"),
        ({"target_type": "lsn", "target": "16-B374D848"}, "is not of the form X/X"),
        ({"target_type": "latest", "target": "2026-11-24T14:59:00Z"}, "takes no value"),
        (
            {"target_type": "latest", "target": None, "promote": False},
            "promote=false needs a recovery target to pause at",
        ),
        ({"base_backup_id": "last-sunday"}, "base_backup_id must be empty (automatic) or a set id"),
        ({"data_directory": None}, "data_directory is required"),
        ({"data_directory": "pitr/data"}, "is not an absolute path"),
        ({"data_directory": "/var/lib/hms-dr/pitr/../postgresql/15/main"}, "must not contain '..'"),
        ({"data_directory": "/var/lib/postgresql/15/main"}, "is outside the policy's allowed roots"),
        ({"data_directory": "/var/lib/hms-dr/pitr"}, "is outside the policy's allowed roots"),  # the root itself
        ({"data_directory": "/var/lib/hms-dr/pitr-other/data"}, "is outside the policy's allowed roots"),
        ({"port": 5432}, "port 5432 is outside the policy's range for recovered servers (55432-55532)"),
        ({"port": "55433; DROP"}, "port must be a whole number"),
        ({"promote": "yes"}, "promote must be true or false"),
    ],
)
def test_each_bad_param_is_refused_with_one_line_naming_it(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRefused) as caught:  # the operator's to fix: the run fails without paging
        read(**changes)
    assert message in caught.value.message and "\n" not in caught.value.message


def test_a_policy_without_allowed_roots_refuses_every_data_directory() -> None:
    with pytest.raises(ParamInvalid, match=r"set dr\.allowed_data_roots") as caught:
        read_pitr_request(GOOD, allowed_roots=[], port_range=PORTS, now=NOW)
    assert not isinstance(caught.value, RequestRefused), "the policy's gap, not the operator's: it pages"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short temporary directory instead of pytest's: a data directory's path is limited (its
    server's Unix socket path must fit in 108 bytes), and pytest-xdist's tmp paths are long."""
    path = Path(tempfile.mkdtemp(prefix="pitr-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def on_host(tmp_path: Path, data_dir: Path, port: int | None, ports: tuple[int, int]) -> Any:
    request = read_pitr_request(
        {**GOOD, "data_directory": str(data_dir), "port": port},
        allowed_roots=[tmp_path / "root"],
        port_range=ports,
        now=NOW,
    )
    return check_pitr_host(request, allowed_roots=[tmp_path / "root"], port_range=ports)


def test_a_non_empty_data_directory_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    data_dir = tmp_path / "root" / "live" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("15\n")
    with pytest.raises(RequestRefused, match="is not empty: refused, nothing was touched"):
        on_host(tmp_path, data_dir, None, PORTS)
    assert [p.name for p in data_dir.iterdir()] == ["PG_VERSION"]


def test_a_symlink_below_the_root_that_leads_out_of_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RequestRefused, match="outside the policy's allowed roots"):
        on_host(tmp_path, tmp_path / "root" / "link" / "data", None, PORTS)


def test_a_port_in_use_is_refused(tmp_path: Path, listening: int) -> None:
    with pytest.raises(RequestRefused, match=f"port {listening} on 127.0.0.1 is already in use"):
        on_host(tmp_path, tmp_path / "root" / "new" / "data", listening, (listening, listening + 1))


def test_without_a_port_the_first_free_one_of_the_range_is_chosen(tmp_path: Path, listening: int) -> None:
    empty = tmp_path / "root" / "empty" / "data"
    empty.mkdir(parents=True)  # an existing empty directory is fine
    request = on_host(tmp_path, empty, None, (listening, listening + 50))
    assert request.port is not None and listening < request.port <= listening + 50
    assert list(empty.iterdir()) == []


def test_no_free_port_in_the_range_is_refused(tmp_path: Path, listening: int) -> None:
    with pytest.raises(
        PreflightFailed, match=f"no free port on 127.0.0.1 in the policy's range {listening}-{listening}"
    ) as caught:
        on_host(tmp_path, tmp_path / "root" / "x" / "data", None, (listening, listening))
    assert not isinstance(caught.value, RequestRefused), "the host's problem, not the request's: it pages"


def test_too_little_space_for_the_base_backup_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PreflightFailed, match="the base backup alone needs"):
        refuse_short_space(tmp_path / "not-yet" / "data", 1 << 60)
    assert refuse_short_space(tmp_path / "not-yet" / "data", 1) > 0


RECOVERED = {
    "backup_set_id": "20261122T030000Z",
    "target": {"kind": "time", "value": "2026-11-24T14:59:00Z", "inclusive": True},
    "timeline": 2,
    "recovery_end_lsn": "0/5A000110",
    "recovery_end_time": "2026-11-24T14:58:57.120000Z",
    "promoted_at": "2026-11-24T15:20:30Z",
    "promoted": True,
    "port": 55433,
    "data_dir": "/var/lib/hms-dr/pitr/incident-42/data",
    "log_file": "/var/lib/hms-dr/pitr/incident-42/log/data.log",
}


def test_the_report_says_how_to_connect_and_measures_the_rto_from_the_trigger() -> None:
    report = describe_recovered_cluster(
        RECOVERED, database="hospital_management", user="hms_backup", queued_at=NOW, rto_target_s=4 * 3600
    )
    assert report["connect"] == "psql -h 127.0.0.1 -p 55433 -U hms_backup hospital_management"
    assert report["rto_s"] == 1230.0 and report["within_rto"] and report["state"] == "promoted"
    assert any("connect: psql -h 127.0.0.1 -p 55433" in line for line in report["lines"])
    assert report["lines"][-1].startswith("  RTO 1230 s: triggered 2026-11-24T15:00:00Z, promoted 2026-11-24T15:20:30Z")


def test_a_paused_cluster_is_reported_read_only_with_how_to_open_it() -> None:
    paused = {**RECOVERED, "promoted": False, "promoted_at": None, "paused_at": "2026-11-24T15:10:00Z", "timeline": 1}
    report = describe_recovered_cluster(
        paused,
        database="hospital_management",
        user="hms_backup",
        queued_at=NOW - timedelta(hours=5),
        rto_target_s=4 * 3600,
    )
    assert report["state"] == "paused" and not report["within_rto"]
    assert any("SELECT pg_promote()" in line for line in report["lines"])


def test_a_port_held_by_a_socket_that_does_not_listen_is_not_free() -> None:
    from hms_dr.physical.request import port_is_free

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:  # e.g. a client connection's own end
        held.bind(("127.0.0.1", 0))
        port = int(held.getsockname()[1])
        assert not port_is_free(port)
    assert port_is_free(port)
