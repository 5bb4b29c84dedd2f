"""The physical restore drill's offline corruption check, on a cluster that ``recover`` built.

The restore test (``hms_dr.restore_test.drill``) recovers the newest base backup to the snapshot LSN
of a logical set and checks it against that set's baselines; then this module stops the server and
runs ``pg_checksums --check`` on the data directory — the runbook's offline corruption check,
possible only with the server stopped. Finally the cluster is removed, whatever happened before
(``hms_dr.scratch.cluster``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hms_dr.errors import DataCorruption
from hms_dr.pginstalls import data_dir_major, data_install
from hms_dr.physical.server import RecoveringServer
from hms_dr.server_user import run_server_tool

log = logging.getLogger(__name__)

_COUNT = re.compile(r"^(Files scanned|Blocks scanned|Bad checksums):\s+(\d+)\s*$", re.MULTILINE)
_BAD_BLOCK = re.compile(r'checksum verification failed in file "([^"]+)", block (\d+)')
_NOT_ENABLED = "data checksums are not enabled"


def server_of(recovered: Mapping[str, Any]) -> RecoveringServer:
    """The recovered cluster's server, from what ``recover`` returned."""
    return RecoveringServer(
        Path(recovered["data_dir"]),
        int(recovered["port"]),
        Path(recovered["socket_dir"]),
        Path(recovered["log_file"]),
        str(recovered.get("superuser") or "postgres"),
    )


def parse_pg_checksums(output: str) -> dict[str, Any]:
    """Counts and the damaged blocks from ``pg_checksums --check`` output (stdout and stderr)."""
    counts = {name: int(value) for name, value in _COUNT.findall(output)}
    bad_blocks = [{"file": path, "block": int(block)} for path, block in _BAD_BLOCK.findall(output)]
    return {
        "checksums_enabled": _NOT_ENABLED not in output,
        "files_scanned": counts.get("Files scanned"),
        "blocks_scanned": counts.get("Blocks scanned"),
        "bad_checksums": counts.get("Bad checksums", len(bad_blocks)),
        "bad_blocks": bad_blocks,
    }


def check_checksums_offline(recovered: Mapping[str, Any]) -> dict[str, Any]:
    """Stop the recovered server cleanly and verify every block's checksum.

    :raises DataCorruption: a block's checksum does not match, naming the files and blocks.
    """
    server = server_of(recovered)
    server.stop("fast")
    data_dir = Path(recovered["data_dir"])
    pg = data_install(data_dir_major(data_dir), data=f"the recovered data directory {data_dir}")
    done = run_server_tool([pg.program("pg_checksums"), "--check", "-D", data_dir], check=False, timeout_s=6 * 3600)
    result = parse_pg_checksums(done.stdout + "\n" + done.stderr)
    if not result["checksums_enabled"]:
        log.warning(
            "pg_checksums: the cluster has no data checksums (initdb without --data-checksums): no offline block check possible"
        )
        return result
    if done.returncode != 0 or result["bad_checksums"]:
        named = (
            ", ".join(f"{b['file']} block {b['block']}" for b in result["bad_blocks"][:5])
            or (done.stderr.strip().splitlines() or ["?"])[-1]
        )
        raise DataCorruption(
            f"pg_checksums found {result['bad_checksums']} bad block(s) in the recovered cluster: {named}",
            hint="the base backup or the WAL carries damaged pages: run hms_integrity_check on production and take a new base backup",
        )
    log.info(
        "pg_checksums --check: %s files, %s blocks, no bad checksum", result["files_scanned"], result["blocks_scanned"]
    )
    return result
