"""How payloads are encrypted: to the backup public key, or with a symmetric passphrase.

A kind of its own, below both the policy (which reads it from ``encryption.mode``) and crypto
(which encrypts and decrypts by it), so the encryption code never depends on the YAML reader.
"""

from __future__ import annotations

from enum import StrEnum


class EncryptionMode(StrEnum):
    PUBLIC_KEY = "public_key"
    SYMMETRIC = "symmetric"
