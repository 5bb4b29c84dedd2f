"""Writing small local files so that a crash never leaves a half-written one."""

from __future__ import annotations

import os
from pathlib import Path

from hms_dr.server_user import chown_to_server


def write_file_atomically(path: Path, text: str, mode: int = 0o644, *, for_server: bool = False) -> None:
    """Write ``text`` to a temp file created with ``mode``, fsync it, and rename it over ``path``.

    :param for_server: the file belongs to the PostgreSQL server's OS user (see hms_dr.server_user).
    """
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        if for_server:
            chown_to_server(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
