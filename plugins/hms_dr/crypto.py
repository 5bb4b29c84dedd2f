"""Encryption at rest with gpg: to a public key (the backup host cannot decrypt) or with a passphrase.

Each operation runs in its own throw-away GNUPGHOME (``hms_dr.gpghome``), so no keyring on the
worker matters and nothing outlives the task. Keys and passphrases arrive as plain values (the
tasks layer reads them from Airflow Connections) and reach gpg through stdin or a private file
descriptor, never argv. gpg's own compression is off: payloads are already compressed by the
time they arrive.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hms_dr.errors import DecryptionFailed, EncryptionFailed
from hms_dr.gpghome import gpg_home  # noqa: F401 -- the place callers have always imported it from
from hms_dr.policy import EncryptionMode
from hms_dr.streams import Stage

CIPHER = "AES256"
GPG = "gpg"


@dataclass(frozen=True)
class EncryptionKey:
    """What the backup encrypts with: a public key (armored) or a symmetric passphrase."""

    mode: EncryptionMode
    key_id: str  # the fingerprint the policy expects; "symmetric" for passphrases
    public_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DecryptionKey:
    """What a restore decrypts with: the secret key (armored) and its passphrase, or a passphrase."""

    mode: EncryptionMode
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    can_encrypt: bool
    validity: str  # gpg's validity letter: 'e' expired, 'r' revoked, '-'/'u'/'f' usable


def gpg_version() -> str:
    done = subprocess.run([GPG, "--version"], capture_output=True, text=True, timeout=30)
    first = done.stdout.splitlines()[0] if done.stdout else ""
    return first.split()[-1] if first else "unknown"


def _gpg_base(home: Path) -> list[str]:
    # --no-autostart: the home's agent is the one gpg_home started and guards; an agent gpg
    # started on its own would outlive a killed task (and a failure says "No agent" instead).
    return [GPG, "--homedir", str(home), "--batch", "--no-tty", "--quiet", "--no-permission-warning", "--no-autostart"]


def import_public_key(home: Path, armored: str) -> list[KeyInfo]:
    """Import a public key into ``home``; the keys it held, as gpg lists them."""
    done = subprocess.run(_gpg_base(home) + ["--import"], input=armored.encode(), capture_output=True, timeout=60)
    if done.returncode != 0:
        raise EncryptionFailed(f"the backup public key could not be imported: {_last(done.stderr)}")
    listing = subprocess.run(_gpg_base(home) + ["--with-colons", "--list-keys"], capture_output=True, text=True, timeout=60)
    return parse_key_listing(listing.stdout)


def parse_key_listing(colons: str) -> list[KeyInfo]:
    """Primary keys from `gpg --with-colons --list-keys`, with their fingerprints and capabilities."""
    keys: list[KeyInfo] = []
    pending: tuple[str, str] | None = None  # (validity, capabilities) of the last 'pub' line
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            pending = (fields[1], fields[11] if len(fields) > 11 else "")
        elif fields[0] == "fpr" and pending is not None:
            validity, capabilities = pending
            keys.append(KeyInfo(fingerprint=fields[9].upper(), can_encrypt="E" in capabilities, validity=validity))
            pending = None
    return keys


def check_encryption_key(home: Path, key: EncryptionKey) -> None:
    """Import and vet the key before anything is dumped: the policy's fingerprint, usable for encryption."""
    if key.mode is EncryptionMode.SYMMETRIC:
        if not key.passphrase or len(key.passphrase) < 16:
            raise EncryptionFailed("the symmetric backup passphrase is missing or shorter than 16 characters")
        return
    if not key.public_key or "BEGIN PGP PUBLIC KEY BLOCK" not in key.public_key:
        raise EncryptionFailed("no armored public key (extra.public_key) in the backup encryption connection")
    if "PRIVATE KEY" in key.public_key:
        raise EncryptionFailed("the backup encryption connection holds a PRIVATE key: give the backup host the public key only")
    keys = import_public_key(home, key.public_key)
    fingerprints = [k.fingerprint for k in keys]
    match = next((k for k in keys if k.fingerprint == key.key_id.upper()), None)
    if match is None:
        raise EncryptionFailed(
            f"the backup public key has fingerprint {', '.join(fingerprints) or 'none'}, "
            f"but the policy's encryption.key_id is {key.key_id}",
            hint="put the fingerprint of the hospital's backup key in the policy, or the matching key in the connection",
        )
    if match.validity in ("e", "r", "d", "i"):
        raise EncryptionFailed(f"the backup public key {match.fingerprint} is expired, revoked or invalid ({match.validity})")
    if not match.can_encrypt:
        raise EncryptionFailed(f"the backup public key {match.fingerprint} has no usable encryption (sub)key")


def encrypt_stage(home: Path, key: EncryptionKey) -> Stage:
    """gpg encrypting stdin to stdout with AES256, no compression, for the pipeline."""
    common = _gpg_base(home) + ["--compress-algo", "none", "--cipher-algo", CIPHER, "--output", "-"]
    if key.mode is EncryptionMode.SYMMETRIC:
        argv = common + ["--pinentry-mode", "loopback", "--passphrase-fd", "{secret_fd}", "--s2k-digest-algo", "SHA512", "--symmetric"]
        return Stage("gpg --symmetric", argv, secret_input=key.passphrase)
    argv = common + ["--trust-model", "always", "--recipient", key.key_id, "--encrypt"]
    return Stage("gpg --encrypt", argv)


def prepare_decryption(home: Path, key: DecryptionKey) -> None:
    """Import the restore key into ``home``; fails clearly when it is missing or not a secret key."""
    if key.mode is EncryptionMode.SYMMETRIC:
        if not key.passphrase:
            raise DecryptionFailed("no passphrase in the restore key connection")
        return
    if not key.private_key or "PRIVATE KEY BLOCK" not in key.private_key:
        raise DecryptionFailed("no armored private key (extra.private_key) in the restore key connection")
    # gpg >= 2.1 imports a protected secret key as it is; the passphrase is only needed to decrypt.
    done = subprocess.run(_gpg_base(home) + ["--import"], input=key.private_key.encode(), capture_output=True, timeout=60)
    if done.returncode != 0:
        raise DecryptionFailed(f"the restore key could not be imported: {_last(done.stderr)}")


def decrypt_stage(home: Path, key: DecryptionKey) -> Stage:
    """gpg decrypting stdin to stdout; a wrong key or passphrase fails the pipeline."""
    argv = _gpg_base(home) + [
        "--pinentry-mode", "loopback", "--passphrase-fd", "{secret_fd}", "--no-symkey-cache", "--output", "-", "--decrypt",
    ]
    return Stage("gpg --decrypt", argv, secret_input=key.passphrase or "")


def explain_decryption_failure(stderr_line: str) -> DecryptionFailed:
    """A one-line DecryptionFailed for what gpg printed last."""
    lowered = stderr_line.lower()
    if "no secret key" in lowered:
        why = "the payload was encrypted to a key the restore key connection does not hold"
    elif "bad passphrase" in lowered or "bad session key" in lowered:
        why = "wrong passphrase for the restore key or the symmetric backup"
    elif "mdc" in lowered or "integrity" in lowered or "invalid packet" in lowered or "no valid openpgp data" in lowered:
        why = "the encrypted payload is damaged"
    else:
        why = "gpg could not decrypt the payload"
    return DecryptionFailed(f"{why} (gpg: {stderr_line})")


def _last(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
