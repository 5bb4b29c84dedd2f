"""Encryption at rest with gpg: to a public key (the backup host cannot decrypt) or with a passphrase.

Each operation runs in its own throw-away GNUPGHOME (``hms_dr.gpghome``), so no keyring on the
worker matters and nothing outlives the task. Keys and passphrases arrive as plain values (the
tasks layer reads them from Airflow Connections) and reach gpg through stdin or a private file
descriptor, never argv. gpg's own compression is off: payloads are already compressed by the
time they arrive.
"""

from __future__ import annotations

import io
import re
import secrets
import subprocess
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

from hms_dr.encryption_mode import EncryptionMode
from hms_dr.errors import DecryptionFailed, EncryptionFailed, ToolFailed
from hms_dr.gpghome import gpg_home  # noqa: F401 -- the place callers have always imported it from
from hms_dr.streams import Pipeline, Stage

CIPHER = "AES256"
GPG = "gpg"
STATUS_PREFIX = "[GNUPG:] "
PROBE_BYTES = 32
# What gpg prints for a payload whose bytes changed after encryption (gpg 2.2's wording).
_DAMAGE_SIGNS = (
    "mdc",
    "manipulated",
    "integrity",
    "invalid packet",
    "no valid openpgp data",
    "read error",
    "unknown version",
)
# What gpg prints when the agent, not the key, failed (gpg's own wording, 2.2 and later).
_AGENT_FAILURE = re.compile(
    r"public key decryption failed: (?P<why>.+)|problem with the agent: (?P<agent>.+)|(?P<none>no gpg-agent running)"
)


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


def _gpg_base(home: Path, *, quiet: bool = True) -> list[str]:
    # --no-autostart: the home's agent is the one gpg_home started and guards; an agent gpg
    # started on its own would outlive a killed task (and a failure says "No agent" instead).
    argv = [GPG, "--homedir", str(home), "--batch", "--no-tty", "--no-permission-warning", "--no-autostart"]
    return [*argv, "--quiet"] if quiet else argv


def import_public_key(home: Path, armored: str) -> list[KeyInfo]:
    """Import a public key into ``home``; the keys it held, as gpg lists them."""
    done = subprocess.run([*_gpg_base(home), "--import"], input=armored.encode(), capture_output=True, timeout=60)
    if done.returncode != 0:
        raise EncryptionFailed(f"the backup public key could not be imported: {_last(done.stderr)}")
    listing = subprocess.run(
        [*_gpg_base(home), "--with-colons", "--list-keys"], capture_output=True, text=True, timeout=60
    )
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
        raise EncryptionFailed(
            "the backup encryption connection holds a PRIVATE key: give the backup host the public key only"
        )
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
        raise EncryptionFailed(
            f"the backup public key {match.fingerprint} is expired, revoked or invalid ({match.validity})"
        )
    if not match.can_encrypt:
        raise EncryptionFailed(f"the backup public key {match.fingerprint} has no usable encryption (sub)key")


def encrypt_stage(home: Path, key: EncryptionKey) -> Stage:
    """gpg encrypting stdin to stdout with AES256, no compression, for the pipeline."""
    common = [*_gpg_base(home), "--compress-algo", "none", "--cipher-algo", CIPHER, "--output", "-"]
    if key.mode is EncryptionMode.SYMMETRIC:
        argv = [
            *common,
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            "{secret_fd}",
            "--s2k-digest-algo",
            "SHA512",
            "--symmetric",
        ]
        return Stage("gpg --symmetric", argv, secret_input=key.passphrase)
    argv = [*common, "--trust-model", "always", "--recipient", key.key_id, "--encrypt"]
    return Stage("gpg --encrypt", argv)


@dataclass(frozen=True)
class ImportedKey:
    """The restore key as imported into one gpg home, unlocked once: what decryptions there use."""

    home: Path
    key: DecryptionKey = field(repr=False)
    key_ids: frozenset[str]  # long ids of the secret (sub)keys it holds; empty for a passphrase

    def decrypt_stage(self) -> Stage:
        return decrypt_stage(self.home, self.key)

    def explain(self, failure: ToolFailed) -> DecryptionFailed:
        """A one-line DecryptionFailed for a failed gpg stage of this key."""
        return explain_decryption_failure(failure.stderr_lines or (failure.last_stderr_line,), self.key_ids)


def prepare_decryption(home: Path, key: DecryptionKey) -> ImportedKey:
    """Import the restore key into ``home`` and unlock it once; fails clearly when it is missing,
    not a secret key, or its passphrase is wrong."""
    if key.mode is EncryptionMode.SYMMETRIC:
        if not key.passphrase:
            raise DecryptionFailed("no passphrase in the restore key connection")
        return ImportedKey(home, key, frozenset())
    if not key.private_key or "PRIVATE KEY BLOCK" not in key.private_key:
        raise DecryptionFailed("no armored private key (extra.private_key) in the restore key connection")
    # gpg >= 2.1 imports a protected secret key as it is; the passphrase is only needed to decrypt.
    done = subprocess.run(
        [*_gpg_base(home), "--import"], input=key.private_key.encode(), capture_output=True, timeout=60
    )
    if done.returncode != 0:
        raise DecryptionFailed(f"the restore key could not be imported: {_last(done.stderr)}")
    listing = subprocess.run(
        [*_gpg_base(home), "--with-colons", "--list-secret-keys"], capture_output=True, text=True, timeout=60
    )
    secret_keys = parse_secret_key_listing(listing.stdout)
    imported = ImportedKey(home, key, frozenset(k.key_id for k in secret_keys))
    for secret_key in secret_keys:
        if secret_key.can_encrypt:
            _unlock_once(imported, secret_key.key_id)
    return imported


@dataclass(frozen=True)
class SecretKeyInfo:
    key_id: str  # the long key id, as gpg's ENC_TO status names the recipient of a payload
    can_encrypt: bool  # usable for encryption now (not expired or revoked)


def parse_secret_key_listing(colons: str) -> list[SecretKeyInfo]:
    """Secret keys and subkeys from `gpg --with-colons --list-secret-keys`."""
    keys = []
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] in ("sec", "ssb") and len(fields) > 11:
            usable = fields[1] not in ("e", "r", "d", "i")
            keys.append(SecretKeyInfo(fields[4].upper(), usable and "e" in fields[11]))
    return keys


def _unlock_once(imported: ImportedKey, key_id: str) -> None:
    """Decrypt a probe encrypted to ``key_id``, alone, before any payload is decrypted.

    gpg-agent 2.2 keeps an imported secret key in OpenPGP's format until its first use, which
    re-protects it in the agent's own format and rewrites the key file in place (GnuPG writes
    a temp file and renames it only from 2.4.2). When that first use is several decryptions at
    once -- the WAL source's prefetch -- each of them converts the key: one reads the file
    while another rewrites it ("error parsing", that decryption fails), or, as the conversions
    also race on the agent's S2K calibration, the file ends up recording another iteration
    count than the one its key was protected with, and no passphrase unlocks it again ("Bad
    passphrase" for every later decryption). gpg --quiet reported both as "No secret key".
    One decryption first, on its own, converts the key while nothing else reads it, and
    proves the passphrase before anything is downloaded.
    """
    probe = secrets.token_bytes(PROBE_BYTES)
    encrypt = [
        *_gpg_base(imported.home),
        "--trust-model",
        "always",
        "--recipient",
        f"{key_id}!",
        "--output",
        "-",
        "--encrypt",
    ]
    encrypted = subprocess.run(encrypt, input=probe, capture_output=True, timeout=120)
    if encrypted.returncode != 0:
        raise DecryptionFailed(f"gpg could not encrypt a probe to restore key {key_id}: {_last(encrypted.stderr)}")
    try:
        with Pipeline([imported.decrypt_stage()], source=io.BytesIO(encrypted.stdout)) as pipeline:
            decrypted = pipeline.output.read()
    except ToolFailed as exc:
        failure = read_decryption_report(exc.stderr_lines)
        if failure.agent_error.lower() == "bad passphrase":
            raise DecryptionFailed(
                f"wrong passphrase for the restore key {key_id} (gpg-agent: {failure.agent_error})"
            ) from None
        raise imported.explain(exc) from None
    if decrypted != probe:
        raise DecryptionFailed(f"a probe encrypted to restore key {key_id} did not decrypt to its own bytes")


def decrypt_stage(home: Path, key: DecryptionKey) -> Stage:
    """gpg decrypting stdin to stdout; a wrong key or passphrase fails the pipeline."""
    # Not --quiet: with it gpg keeps to itself WHY the session key could not be decrypted
    # ("public key decryption failed: <agent error>"), and every failure reads "No secret key".
    argv = [
        *_gpg_base(home, quiet=False),
        "--status-fd",
        "2",
        "--pinentry-mode",
        "loopback",
        "--passphrase-fd",
        "{secret_fd}",
        "--no-symkey-cache",
        "--output",
        "-",
        "--decrypt",
    ]
    return Stage("gpg --decrypt", argv, secret_input=key.passphrase or "")


@dataclass(frozen=True)
class DecryptionReport:
    """What gpg --decrypt said (stderr with --status-fd 2), read for the operator."""

    recipients: frozenset[str]  # long key ids the payload is encrypted to (ENC_TO)
    agent_error: str  # why the agent could not decrypt the session key, if it said
    last_line: str  # gpg's own last error line
    messages: tuple[str, ...]  # every line for people (not [GNUPG:] status lines)


def read_decryption_report(stderr_lines: Sequence[str]) -> DecryptionReport:
    recipients = set()
    agent_error = ""
    messages = []
    for line in stderr_lines:
        if line.startswith(STATUS_PREFIX):
            words = line[len(STATUS_PREFIX) :].split()
            if len(words) > 1 and words[0] == "ENC_TO":
                recipients.add(words[1].upper())
            continue
        messages.append(line)
        match = _AGENT_FAILURE.search(line)
        if match and not agent_error:
            agent_error = (match.group("why") or match.group("agent") or match.group("none")).strip()
    last = next(
        (m for m in reversed(messages) if "error" in m.lower() or "failed" in m.lower()),
        messages[-1] if messages else "",
    )
    return DecryptionReport(frozenset(recipients), agent_error, last.removeprefix("gpg: "), tuple(messages))


def explain_decryption_failure(stderr_lines: Sequence[str], held_key_ids: Set[str]) -> DecryptionFailed:
    """A one-line DecryptionFailed for what gpg said; the key is blamed only when the payload's
    recipients are keys ``held_key_ids`` (what the restore key connection holds) does not name."""
    report = read_decryption_report(stderr_lines)
    said = f"(gpg: {report.last_line})"
    if report.recipients and not report.recipients & held_key_ids:
        held = ", ".join(sorted(held_key_ids)) or "no secret key, only a passphrase"
        why = (
            f"the payload was encrypted to a key the restore key connection does not hold "
            f"(payload for {', '.join(sorted(report.recipients))}; the connection holds {held})"
        )
        return DecryptionFailed(f"{why} {said}")
    if report.recipients:
        ours = ", ".join(sorted(report.recipients & held_key_ids))
        cause = f"agent error: {report.agent_error}" if report.agent_error else f"gpg: {report.last_line}"
        return DecryptionFailed(
            f"gpg could not decrypt the payload with restore key {ours}, which it is encrypted to ({cause})"
        )
    return DecryptionFailed(f"{_symmetric_or_damaged(' '.join(report.messages).lower())} {said}")


def _symmetric_or_damaged(lowered: str) -> str:
    if "bad passphrase" in lowered or "bad session key" in lowered:
        return "wrong passphrase for the restore key or the symmetric backup"
    if any(sign in lowered for sign in _DAMAGE_SIGNS):
        return "the encrypted payload is damaged"
    return "gpg could not decrypt the payload"


def _last(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
