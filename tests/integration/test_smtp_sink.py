"""The sandbox's SMTP sink keeps every message it receives as an .eml file, and stops cleanly."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from hms_sandbox.cluster import free_port, port_is_open
from hms_sandbox.smtpsink import SmtpSink, received_messages

pytestmark = pytest.mark.integration


def test_the_sink_writes_each_message_whole_and_stops(tmp_path: Path) -> None:
    sink = SmtpSink(free_port(), tmp_path / "mail", tmp_path / "smtp")
    sink.start()
    try:
        assert sink.is_running() and port_is_open(sink.port)
        sink.start()  # idempotent: a running sink is left alone
        for n in (1, 2):
            message = EmailMessage()
            message["Subject"] = f"[hms-dr] test {n}"
            message["From"] = "hms-dr@sandbox.invalid"
            message["To"] = "dba-oncall@sandbox.invalid"
            message.set_content(f"body {n}\n")
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
                client.send_message(message)
        received = received_messages(sink.maildir)
        assert [m["Subject"] for m in received] == ["[hms-dr] test 1", "[hms-dr] test 2"]
        assert received[1].get_content().strip() == "body 2"
        assert not list(sink.maildir.glob(".*")), "no half-written message left behind"
    finally:
        sink.stop()
    assert not sink.is_running() and not port_is_open(sink.port)
