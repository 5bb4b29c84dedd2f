"""Scratch clusters: a throw-away PostgreSQL cluster recovered on this worker (the physical
drill's, or the point-in-time source of a DR restore), where it lives and how it goes.

Everything of a scratch cluster is under its home (``data/``, ``log/``), and the home sits in a
scratch-cluster folder (``dr-restore/`` or ``restore-test/``): removal refuses any other path,
so a wrong record can never delete a real cluster. Only the socket directory may live outside,
in the temp directory, when the home is too deep for a Unix socket path.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hms_dr.errors import HmsDrError, ParamInvalid, PreflightFailed
from hms_dr.scratch.workdir import WorkPurpose, work_folder

log = logging.getLogger(__name__)

SCRATCH_CLUSTER_FOLDERS = frozenset({WorkPurpose.DR_RESTORE.value, WorkPurpose.RESTORE_TEST.value})
SOCKET_DIR_PREFIX = "hms-scratch-"


@dataclass(frozen=True)
class ScratchCluster:
    """Where a scratch cluster lives on this worker."""

    home: Path  # data/ and log/ are under here, and go with it
    socket_dir: Path  # under home, or a private temp directory of our own (named SOCKET_DIR_PREFIX*)
    log_file: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def to_dict(self) -> dict[str, str]:
        return {
            "home": str(self.home),
            "data_dir": str(self.data_dir),
            "socket_dir": str(self.socket_dir),
            "log_file": str(self.log_file),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScratchCluster:
        home = Path(data["home"]) if data.get("home") else Path(data["data_dir"]).parent
        return cls(home, Path(data["socket_dir"]), Path(data["log_file"]))


def dr_scratch_cluster(root: Path, key: str) -> ScratchCluster:
    """A DR restore's cluster under ``root`` (a data root, or staging): ``dr-restore/<hash of key>``,
    a short path, so its socket directory fits under it."""
    home = root / WorkPurpose.DR_RESTORE.value / hashlib.sha256(key.encode()).hexdigest()[:10]
    return ScratchCluster(home, home / "sockets", home / "log" / "server.log")


def drill_scratch_cluster(staging_dir: Path, scratch_database: str) -> ScratchCluster:
    """The physical drill's cluster beside the run's logical scratch: ``restore-test/<name>-pitr``.
    That path is too deep for a socket, so the socket directory is a fresh private temp one."""
    home = work_folder(staging_dir, WorkPurpose.RESTORE_TEST) / f"{scratch_database}-pitr"
    socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))
    return ScratchCluster(home, socket_dir, home / "log" / "postgresql.log")


def refuse_unless_scratch_cluster(cluster: ScratchCluster) -> None:
    """ParamInvalid unless the cluster's home is in a scratch-cluster folder."""
    if cluster.home.parent.name not in SCRATCH_CLUSTER_FOLDERS or cluster.home.is_symlink():
        raise ParamInvalid(f"refusing to remove {cluster.home}: not a scratch cluster directory")


def remove_scratch_cluster(cluster: ScratchCluster, *, superuser: str = "postgres") -> list[str]:
    """Stop the cluster's server if it runs and delete its home and socket directory; the paths
    removed (empty when nothing was left)."""
    from hms_dr.physical.server import RecoveringServer

    refuse_unless_scratch_cluster(cluster)
    if (cluster.data_dir / "postmaster.pid").exists():
        server = RecoveringServer(cluster.data_dir, 0, cluster.socket_dir, cluster.log_file, superuser)
        try:
            server.stop("immediate")  # nothing in it is kept: no checkpoint to wait for
        except (HmsDrError, OSError) as exc:  # a half-started server must not keep its files alive
            log.warning("could not stop the scratch cluster's server in %s: %s", cluster.data_dir, exc)
    removed = []
    for path in (cluster.home, _own_socket_dir(cluster)):
        if path is not None and path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    log.info("removed scratch cluster %s: %s", cluster.home, ", ".join(removed) or "nothing was left")
    return removed


def _own_socket_dir(cluster: ScratchCluster) -> Path | None:
    """The socket directory when it is outside the home and one of ours (by its prefix); None otherwise."""
    socket_dir = cluster.socket_dir
    if socket_dir.is_relative_to(cluster.home):
        return None
    if socket_dir.name.startswith(SOCKET_DIR_PREFIX) and not socket_dir.is_symlink():
        return socket_dir
    log.warning("left socket directory %s: not a private socket directory of a scratch cluster", socket_dir)
    return None


def free_port_in(first: int, last: int) -> int:
    """The first port of ``first..last`` on 127.0.0.1 that nothing listens on and that binds."""
    import socket

    from hms_dr.server_user import port_is_open

    for port in range(first, last + 1):
        if port_is_open(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise PreflightFailed(
        f"no free port in {first}..{last} on 127.0.0.1 for the scratch cluster", hint="widen dr.pitr_port_range"
    )
