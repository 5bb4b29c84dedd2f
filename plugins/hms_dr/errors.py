"""Every exception the engine raises.

Messages are one line for the on-call operator and name the object and the value at fault;
an optional hint adds a second line starting with ``HINT:``. Whether a failure is worth
retrying is decided once, in ``hms_dr.tasks``: only :class:`StoreUnavailable` (and
:class:`DatabaseUnavailable`) are transient.
"""

from __future__ import annotations


class HmsDrError(Exception):
    """Root of every hms-dr failure."""

    transient = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message.replace("\n", " ").strip()
        self.hint = hint
        super().__init__(self.message if hint is None else f"{self.message}\nHINT: {hint}")


class PolicyInvalid(HmsDrError):
    """The policy file is missing, malformed, or holds a value out of range."""


class ParamInvalid(HmsDrError):
    """An operator-supplied parameter is malformed or names something that does not exist."""


class StoreUnavailable(HmsDrError):
    """The store could not be reached or answered with a server-side error."""

    transient = True


class StoreRefused(HmsDrError):
    """The store answered, but refused the operation (permissions, object lock, overwrite)."""


class ObjectMissing(HmsDrError):
    """A key expected in the store is not there."""


class ManifestInvalid(HmsDrError):
    """A manifest cannot be parsed, has an unknown format_version, or contradicts its set."""


class ChecksumMismatch(HmsDrError):
    """Stored bytes do not hash to what the manifest or the writer recorded."""


class ToolFailed(HmsDrError):
    """An external program (pg_dump, gpg, zstd, ...) exited non-zero."""

    def __init__(self, tool: str, exit_code: int | None, last_stderr_line: str, *, hint: str | None = None) -> None:
        self.tool = tool
        self.exit_code = exit_code
        self.last_stderr_line = last_stderr_line
        how = "was killed" if exit_code is None or exit_code < 0 else f"exited {exit_code}"
        detail = f": {last_stderr_line}" if last_stderr_line else ""
        super().__init__(f"{tool} {how}{detail}", hint=hint)


class EncryptionFailed(HmsDrError):
    """The encryption key is missing, unusable, or not the one the policy names."""


class DecryptionFailed(HmsDrError):
    """A payload could not be decrypted with the key or passphrase given."""


class DatabaseUnavailable(HmsDrError):
    """The database server could not be reached or refused the login."""

    transient = True


class PreflightFailed(HmsDrError):
    """A precondition of a backup or restore does not hold; nothing was touched."""


class BackupVerificationFailed(HmsDrError):
    """A backup that was just produced does not pass its own verification."""


class NoBackupForTarget(HmsDrError):
    """No complete backup set can serve the requested restore target."""


class QualityCheckFailed(HmsDrError):
    """A restored database differs from the baselines recorded at backup time."""


class RecoveryPointAtRisk(HmsDrError):
    """The measured RPO is over the policy's target, or WAL archiving is failing."""


class RetentionRefused(HmsDrError):
    """A deletion would break a safety rule of retention and was not made."""


class ReplicationNotPermitted(PreflightFailed):
    """The role a base backup connects as lacks REPLICATION, or the server allows no WAL senders."""


class StagingSpaceShort(PreflightFailed):
    """The staging directory has too little free space for what a backup must stage there."""


class WalMissing(HmsDrError):
    """A WAL file a recovery needs is not in the store: the archive has a gap."""


class RecoveryFailed(HmsDrError):
    """PostgreSQL did not complete a point-in-time recovery; the server log's FATAL line says why."""
