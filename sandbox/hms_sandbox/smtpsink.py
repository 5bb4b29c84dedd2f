"""The sandbox's SMTP sink: a local mail server that keeps every message as an ``.eml`` file.

Alerts in the sandbox and the tests go to it instead of a real mail relay (aiosmtpd on
127.0.0.1). Each message is written to ``<state_dir>/mail/`` under a temporary name and renamed
when complete, so a reader never sees half a message. ``python -m hms_sandbox.smtpsink``
serves it; :class:`SmtpSink` starts and stops that process like the sandbox's other servers.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from hms_sandbox.detached import DetachedProcess

log = logging.getLogger(__name__)

# `python -m hms_sandbox.smtpsink` imports the sandbox package, which imports the engine: the
# sink's process gets both import roots, sandbox/ and plugins/, whatever PYTHONPATH its starter has.
SANDBOX_DIR = Path(__file__).resolve().parents[1]
PLUGINS_DIR = SANDBOX_DIR.parent / "plugins"
MAIL_SUBDIR = "mail"


def mail_dir(state_dir: Path) -> Path:
    """Where the sink of the sandbox in ``state_dir`` writes the messages it receives."""
    return Path(state_dir) / MAIL_SUBDIR


def received_messages(maildir: Path) -> list[EmailMessage]:
    """Every message the sink has written to ``maildir``, oldest first."""
    if not maildir.is_dir():
        return []
    messages = []
    for path in sorted(maildir.glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


@dataclass
class SmtpSink:
    """One sink process on 127.0.0.1:``port``, detached from its starter; pid and log in ``workdir``."""

    port: int
    maildir: Path
    workdir: Path

    @property
    def process(self) -> DetachedProcess:
        """The detached sink process: pid and log files in ``workdir``."""
        return DetachedProcess("smtp-sink", self.workdir, marker=b"smtpsink")

    @property
    def log_file(self) -> Path:
        return self.process.log_file

    def pid(self) -> int | None:
        """The pid of the running sink, or None."""
        return self.process.pid()

    def is_running(self) -> bool:
        return self.pid() is not None

    def answers(self) -> bool:
        """Whether something accepts SMTP connections on the port."""
        from hms_sandbox.cluster import port_is_open

        return port_is_open(self.port)

    def start(self, timeout_s: float = 20) -> None:
        """Start the sink in its own session and wait until it listens; no-op when running."""
        if self.is_running():
            log.info("SMTP sink already running on 127.0.0.1:%d", self.port)
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.maildir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(SANDBOX_DIR), str(PLUGINS_DIR), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        pid = self.process.start(
            [sys.executable, "-m", "hms_sandbox.smtpsink", "--port", str(self.port), "--maildir", str(self.maildir)],
            answers=self.answers,
            timeout_s=timeout_s,
            env=env,
        )
        log.info("SMTP sink on 127.0.0.1:%d writing to %s (pid %d)", self.port, self.maildir, pid)

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the sink (SIGTERM, then SIGKILL); no-op when it is not running."""
        if self.process.stop(timeout_s):
            log.info("SMTP sink on 127.0.0.1:%d stopped", self.port)


class _WriteEml:
    """aiosmtpd handler: each message's bytes, as received, into its own file."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.maildir / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.replace(self.maildir / name)
        log.info("received a message from %s for %s: %s", envelope.mail_from, ", ".join(envelope.rcpt_tos), name)
        return "250 Message accepted for delivery"


def serve(port: int, maildir: Path) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    from aiosmtpd.controller import Controller

    maildir.mkdir(parents=True, exist_ok=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    controller = Controller(_WriteEml(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    log.info("SMTP sink listening on 127.0.0.1:%d, writing to %s", port, maildir)
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        controller.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hms_sandbox.smtpsink", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.port, args.maildir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
