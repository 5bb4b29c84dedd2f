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


class RequestRefused(ParamInvalid):
    """What an operator asked a run for was refused by the run's validation step, before anything
    was touched: a malformed, contradictory or unknown param, a set id the store does not hold, a
    recovery target in the future or before the oldest base backup, a table the set lacks, a
    target that exists already. The run fails and is audited, but nobody is paged: the operator
    who asked reads why in the run, and asks again. Only validation steps raise it, and never for
    the system itself (an unreachable store or database, no backup at all, missing WAL, a restore
    server that is production): those page."""


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

    def __init__(
        self,
        tool: str,
        exit_code: int | None,
        last_stderr_line: str,
        *,
        hint: str | None = None,
        stderr_lines: tuple[str, ...] = (),
    ) -> None:
        self.tool = tool
        self.exit_code = exit_code
        self.last_stderr_line = last_stderr_line
        self.stderr_lines = stderr_lines  # the tail of stderr, for callers that read more than the last line
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


class SetNotFound(NoBackupForTarget):
    """The store holds no complete (or usable) set of ``kind`` with this id; the message names the
    newest ids it does hold, so the operator can pick one."""

    def __init__(self, message: str, *, kind: str, backup_set_id: str, hint: str | None = None) -> None:
        self.kind = kind
        self.backup_set_id = backup_set_id
        super().__init__(message, hint=hint)


class TargetBeforeOldestBackup(NoBackupForTarget):
    """A recovery target older than the oldest base backup that could serve it."""


class BackupChainBroken(NoBackupForTarget):
    """An incremental base backup cannot be restored: a link of its chain (the sets from its full
    backup to its parent, which pg_combinebackup needs every one of, in order) is missing from the
    store, comes from another cluster (system identifier), records another chain than the link
    itself does, is not older than its child, or the parents loop. The message names the tip and
    the link at fault; the hint always says what to do instead.

    ``missing_backup_set_id`` is set when the fault is a link the store does not hold."""

    def __init__(
        self, message: str, *, tip_backup_set_id: str, hint: str, missing_backup_set_id: str | None = None
    ) -> None:
        self.tip_backup_set_id = tip_backup_set_id
        self.missing_backup_set_id = missing_backup_set_id
        super().__init__(message, hint=hint)


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


class BackupsStale(HmsDrError):
    """The newest complete set of a kind is older than the policy allows (or there is none yet)."""

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems), hint=hint)


class AlertNotDelivered(HmsDrError):
    """An alert could not be handed to one or more of its channels (SMTP, Slack, SNS)."""

    transient = True


class ObjectLocked(StoreRefused):
    """An object is under S3 Object Lock (a retention period or a legal hold): it is not deleted
    or replaced before the lock ends; retention reports it instead."""


class OffsiteCopyFailed(HmsDrError):
    """One or more backup sets could not be copied to (or repaired in) the offsite store."""


class OffsiteCopyStale(HmsDrError):
    """A kind's newest copy in the offsite store is older than the policy allows."""


class DataCorruption(HmsDrError):
    """Pages of a cluster fail their checksums (pg_checksums) or amcheck: the data is damaged."""


class SwapRefused(HmsDrError):
    """A DR swap was not made (production unchanged): something the swap cannot carry over, a
    plan that differs from the approved one, or a statement that failed inside its transaction."""


class ApprovalRefused(SwapRefused):
    """A DR swap's approval does not count (production unchanged): nobody answered the form, the
    answer is not Approve, the responder may not approve (the policy's approvers, four eyes), or
    it is for another plan."""


class DatabaseBusy(HmsDrError):
    """A lock was not granted within the lock timeout: the objects are in use; worth retrying."""

    transient = True


class CorruptionFound(HmsDrError):
    """pg_amcheck found corruption: the message names the relations, the hint the DR run that
    would repair them, ``problems`` one line per relation."""

    def __init__(self, message: str, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__(message, hint=hint)


class IntegrityCheckIncomplete(HmsDrError):
    """pg_amcheck could not check some relations (a lock it did not get in time, a permission):
    no corruption is known there, and none is ruled out either."""


class UnexpectedFailure(HmsDrError):
    """Something the engine did not raise itself (Great Expectations, psycopg, the standard
    library): a bug or a broken environment, reported in one line naming the step. Retrying runs
    into it again, so it is not transient (an unreachable database is DatabaseUnavailable)."""
