"""Demo GPG keys for the sandbox: one passphrase-protected key pair that backups are encrypted to.

Passphrases reach gpg on standard input (``--passphrase-fd 0``), never on the command line.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hms_dr.errors import EncryptionFailed, ToolFailed

log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
_KEY_ALGORITHM = "rsa3072"


def prepare_gnupg_home(gnupg_home: Path) -> None:
    """Create the GnuPG home directory with the 0700 mode gpg insists on."""
    gnupg_home.mkdir(parents=True, exist_ok=True)
    gnupg_home.chmod(0o700)


def run_gpg(gnupg_home: Path, args: Sequence[str], *, passphrase: str | None = None, timeout_s: float = 120) -> str:
    """Run gpg in batch mode against ``gnupg_home``; return stdout, raise ToolFailed on failure."""
    argv = ["gpg", "--homedir", str(gnupg_home), "--batch", "--no-tty", "--status-fd", "2"]
    if passphrase is not None:
        argv += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    try:
        proc = subprocess.run(
            [*argv, *args],
            input="" if passphrase is None else passphrase + "\n",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolFailed("gpg", None, "gpg not found on PATH", hint="apt-get install gnupg") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed("gpg", None, f"timed out after {timeout_s} s") from exc
    if proc.returncode != 0:
        messages = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[GNUPG:]")]
        log.error("gpg %s failed:\n%s", args[0] if args else "", "\n".join(messages))
        raise ToolFailed("gpg", proc.returncode, messages[-1] if messages else "")
    return proc.stdout


def generate_key_pair(gnupg_home: Path, uid: str, passphrase: str) -> str:
    """Create a never-expiring RSA 3072 key (sign/certify) with an encryption subkey; return its fingerprint."""
    prepare_gnupg_home(gnupg_home)
    run_gpg(gnupg_home, ["--quick-gen-key", uid, _KEY_ALGORITHM, "cert,sign", "never"], passphrase=passphrase)
    fingerprint = find_fingerprint(gnupg_home, uid)
    run_gpg(gnupg_home, ["--quick-add-key", fingerprint, _KEY_ALGORITHM, "encr", "never"], passphrase=passphrase)
    log.info("generated GPG key %s for %s in %s", fingerprint, uid, gnupg_home)
    return fingerprint


def find_fingerprint(gnupg_home: Path, uid: str) -> str:
    """The fingerprint of the newest primary key whose user id is exactly ``uid``."""
    listing = run_gpg(gnupg_home, ["--with-colons", "--fixed-list-mode", "--list-keys", "--", f"={uid}"])
    fingerprints: list[str] = []
    expect_primary_fpr = False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            expect_primary_fpr = True
        elif fields[0] == "fpr" and expect_primary_fpr:
            fingerprints.append(fields[9])
            expect_primary_fpr = False
        elif fields[0] == "sub":
            expect_primary_fpr = False
    if not fingerprints or not _FINGERPRINT.match(fingerprints[-1]):
        raise EncryptionFailed(f"no GPG key with user id {uid!r} in {gnupg_home}")
    return fingerprints[-1]


def export_public_key(gnupg_home: Path, fingerprint: str) -> str:
    """The armored public key (primary key and subkeys) of ``fingerprint``."""
    armored = run_gpg(gnupg_home, ["--armor", "--export", fingerprint])
    if "BEGIN PGP PUBLIC KEY BLOCK" not in armored:
        raise EncryptionFailed(f"GPG key {fingerprint} not found in {gnupg_home}")
    return armored


def export_secret_key(gnupg_home: Path, fingerprint: str, passphrase: str) -> str:
    """The armored secret key of ``fingerprint``, still protected by its passphrase."""
    armored = run_gpg(gnupg_home, ["--armor", "--export-secret-keys", fingerprint], passphrase=passphrase)
    if "BEGIN PGP PRIVATE KEY BLOCK" not in armored:
        raise EncryptionFailed(f"secret GPG key {fingerprint} not found in {gnupg_home}")
    return armored


def stop_gpg_agent(gnupg_home: Path) -> None:
    """Stop the gpg-agent (and any other GnuPG daemon) serving ``gnupg_home``, if one runs."""
    if not gnupg_home.exists():
        return
    try:
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupg_home), "--kill", "all"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "GNUPGHOME": str(gnupg_home)},
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        log.warning("could not stop the gpg agent of %s: %s", gnupg_home, exc)
