"""The policy's ``encryption:`` section: how payloads are encrypted (hms_dr.encryption_mode), the
backup key's fingerprint, and the Connections that hold the keys (never the keys themselves)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hms_dr.encryption_mode import EncryptionMode
from hms_dr.errors import PolicyInvalid
from hms_dr.policy.reader import PolicyReader

_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")


@dataclass(frozen=True)
class EncryptionPolicy:
    mode: EncryptionMode
    key_id: str
    connection_id: str
    restore_connection_id: str


def parse_encryption(reader: PolicyReader) -> EncryptionPolicy:
    """The ``encryption:`` section; with a public key, key_id must be its full fingerprint."""
    mode = reader.choice("encryption.mode", EncryptionMode)
    key_id = reader.text("encryption.key_id").replace(" ", "").upper()
    if mode is EncryptionMode.PUBLIC_KEY and not _FINGERPRINT.match(key_id):
        raise PolicyInvalid(
            f"{reader.source}: encryption.key_id must be the 40-hex-digit fingerprint of the backup public key, got {key_id!r}"
        )
    return EncryptionPolicy(
        mode=mode,
        key_id=key_id,
        connection_id=reader.text("encryption.connection_id"),
        restore_connection_id=reader.text("encryption.restore_connection_id"),
    )
