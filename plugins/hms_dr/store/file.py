"""The file store: backup sets on a mounted filesystem (a NAS), rooted at ``file:///abs/path``.

Writes go to a hidden temp file in the target directory, are fsynced, then linked into place, so a
reader or a crash never sees a partial object; directories are 0700 and files 0600 from creation.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import logging
import os
import secrets
import stat as stat_mode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from hms_dr.errors import HmsDrError, ObjectMissing, StoreRefused, StoreUnavailable
from hms_dr.store.base import (
    TEMP_NAME,
    Expected,
    GuardedReader,
    ProgressMeter,
    PutResult,
    StoredObject,
    StoreFeatures,
    buffered,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 2**20
_REFUSED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Filesystems without hard links (some SMB mounts) answer os.link with one of these.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class FileStore:
    """A store on a local or mounted filesystem."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_absolute():
            raise ValueError(f"file store root must be an absolute path, got {str(root)!r}")
        self.root = Path(os.path.normpath(path))
        self.url = self.root.as_uri()
        self.features = StoreFeatures(needs_fsync=True, supports_object_lock=False, local_path=self.root)

    # -- writing -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        src: BinaryIO,
        *,
        overwrite: bool = False,
        progress: Callable[[int], None] | None = None,
        expect: Expected | None = None,
    ) -> PutResult:
        """Stream `src` into `key` through a temp file, renamed into place only once every byte is
        written and, with `expect`, proven; refuse an existing key unless `overwrite`."""
        validate_key(key)
        self._check_root()
        final = self._path(key)
        if not overwrite and self.exists(key):
            # Cheap early refusal so we do not stream gigabytes first; the link below is the real guard.
            raise self._refuse_existing(key)
        digest = hashlib.sha256()
        meter = ProgressMeter(progress)
        tmp: Path | None = None
        try:
            with self._guard(final):
                self._make_dirs(final.parent)
                fd, tmp = self._create_temp(final)
                out = os.fdopen(fd, "wb")
            with out:
                while True:
                    chunk = src.read(CHUNK_BYTES)  # the source's own errors propagate untouched
                    if not chunk:
                        break
                    with self._guard(final):
                        out.write(chunk)
                    digest.update(chunk)
                    meter.add(len(chunk))
                with self._guard(final):
                    out.flush()
                    os.fsync(out.fileno())
            if expect is not None:
                expect.check(self.describe(key), meter.total, digest.hexdigest())
            with self._guard(final):
                self._commit(tmp, final, key, overwrite=overwrite)
                _fsync_dir(final.parent)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass  # os.replace consumed it
                except OSError as exc:
                    log.warning("could not remove temp file %s: %s", tmp, exc)
        meter.finish()
        return PutResult(key=key, size_bytes=meter.total, sha256=digest.hexdigest())

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = False) -> PutResult:
        """Store a small in-memory payload under `key`."""
        return self.put(key, io.BytesIO(data), overwrite=overwrite)

    def _commit(self, tmp: Path, final: Path, key: str, *, overwrite: bool) -> None:
        if overwrite:
            os.replace(tmp, final)
            return
        # link() fails if the name exists, so of two concurrent writers exactly one wins.
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise self._refuse_existing(key) from None
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # No hard links on this filesystem: fall back to check-then-rename. Two writers racing
            # on the same key could both pass the check; the last rename wins. hms-dr never runs two
            # writers for one backup set, so this is accepted rather than refusing to work at all.
            log.warning("%s does not support hard links; no-overwrite check is not atomic", self.root)
            if os.path.lexists(final):
                raise self._refuse_existing(key) from None
            os.replace(tmp, final)

    def _make_dirs(self, directory: Path) -> None:
        """Create `directory` and its parents below the root, each 0700, fsyncing each new entry."""
        current = self.root
        for part in directory.relative_to(self.root).parts:
            parent, current = current, current / part
            try:
                os.mkdir(current, 0o700)
            except FileExistsError:
                if not current.is_dir():
                    raise StoreRefused(
                        f"cannot create directory {current}: a file of that name is in the way"
                    ) from None
            else:
                _fsync_dir(parent)

    def _create_temp(self, final: Path) -> tuple[int, Path]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for attempt in range(3):
            tmp = final.with_name(f".{final.name}.partial-{secrets.token_hex(8)}")
            try:
                return os.open(tmp, flags, 0o600), tmp
            except FileNotFoundError:
                # A concurrent delete pruned the now-empty directory between mkdir and open.
                if attempt == 2:
                    raise
                self._make_dirs(final.parent)
        raise AssertionError("unreachable")

    # -- reading -------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Open `key` for a streaming read."""
        validate_key(key)
        self._check_root()
        path = self._path(key)
        with self._guard(path, key=key):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self._guard(path, key=key):
                if not stat_mode.S_ISREG(os.fstat(fd).st_mode):
                    raise ObjectMissing(f"no object {key} in {self.url} ({path} is not a file)")
        except BaseException:
            os.close(fd)
            raise
        raw = os.fdopen(fd, "rb", buffering=0)
        return buffered(GuardedReader(raw, lambda exc: self._translate(exc, path)))

    def get_bytes(self, key: str) -> bytes:
        """Read the whole object at `key`."""
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        """Whether a file is stored under `key`."""
        validate_key(key)
        self._check_root()
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._translate(exc, path) from exc
        return stat_mode.S_ISREG(st.st_mode)

    def stat(self, key: str) -> StoredObject:
        """Size and mtime of `key`."""
        validate_key(key)
        self._check_root()
        path = self._path(key)
        with self._guard(path, key=key):
            st = os.stat(path)
        if not stat_mode.S_ISREG(st.st_mode):
            raise ObjectMissing(f"no object {key} in {self.url} ({path} is not a file)")
        return StoredObject(key=key, size_bytes=st.st_size, modified_at=_utc(st.st_mtime))

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        """Every stored file whose key starts with `prefix`, sorted by key; temp files are skipped."""
        validate_prefix(prefix)
        self._check_root()
        start_rel = prefix.rpartition("/")[0]
        found: builtins.list[StoredObject] = []
        with self._guard(self.root):
            self._walk(start_rel, prefix, found)
        return sorted(found, key=lambda o: o.key)

    def _walk(self, rel_dir: str, prefix: str, found: builtins.list[StoredObject]) -> None:
        directory = self.root / rel_dir if rel_dir else self.root
        try:
            entries = builtins.list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (rel + "/").startswith(prefix) or prefix.startswith(rel + "/"):
                        self._walk(rel, prefix, found)
                    continue
                if TEMP_NAME.match(entry.name) or not rel.startswith(prefix) or not entry.is_file():
                    continue
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while we listed
            try:
                validate_key(rel)
            except ValueError:
                log.warning("skipping %s: its name is not a valid store key", directory / entry.name)
                continue
            found.append(StoredObject(key=rel, size_bytes=st.st_size, modified_at=_utc(st.st_mtime)))

    # -- deleting and the rest -----------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove `key`, then any directories it leaves empty below the root."""
        validate_key(key)
        self._check_root()
        path = self._path(key)
        with self._guard(path, key=key):
            try:
                os.unlink(path)
            except IsADirectoryError:
                raise ObjectMissing(f"no object {key} in {self.url} ({path} is a directory)") from None
            _fsync_dir(path.parent)
        directory = path.parent
        while directory != self.root:
            try:
                os.rmdir(directory)
            except OSError:
                break  # not empty (or already gone): stop pruning
            _fsync_dir(directory.parent)
            directory = directory.parent

    def free_bytes(self) -> int | None:
        """Bytes available to this process on the filesystem holding the root."""
        with self._guard(self.root):
            st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def describe(self, key: str) -> str:
        """The absolute path of `key`."""
        return f"{str(self.root).rstrip('/')}/{key}"

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _check_root(self) -> None:
        # Never create the root: if the NAS is not mounted we must not back up onto the local disk.
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise StoreUnavailable(
                f"store root {self.root} does not exist", hint="is the NAS mounted on this worker?"
            ) from None
        except OSError as exc:
            raise self._translate(exc, self.root) from exc
        if not stat_mode.S_ISDIR(st.st_mode):
            raise StoreRefused(f"store root {self.root} is not a directory")

    def _refuse_existing(self, key: str) -> StoreRefused:
        return StoreRefused(
            f"refusing to overwrite {self.describe(key)}: it already exists",
            hint="objects in a store are never replaced; a new backup set needs a new key",
        )

    @contextmanager
    def _guard(self, path: Path, *, key: str | None = None) -> Iterator[None]:
        """Translate OSError into store errors; with `key`, a missing path means ObjectMissing."""
        try:
            yield
        except OSError as exc:
            if key is not None and isinstance(exc, FileNotFoundError | NotADirectoryError):
                raise ObjectMissing(f"no object {key} in {self.url}") from exc
            raise self._translate(exc, path) from exc

    def _translate(self, exc: BaseException, path: Path) -> HmsDrError:
        if isinstance(exc, HmsDrError):
            return exc
        code = exc.errno if isinstance(exc, OSError) else None
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
        if code in _REFUSED_ERRNOS:
            return StoreRefused(
                f"{path}: {reason}",
                hint=f"check that the Airflow worker's user may write to {self.root} and that it is mounted read-write",
            )
        if code in _NO_SPACE_ERRNOS:
            return StoreUnavailable(
                f"no space left on {self.root} while writing {path}",
                hint="run retention or grow the volume",
            )
        name = errno.errorcode.get(code, "") if code is not None else ""
        return StoreUnavailable(f"{path}: {reason}{f' ({name})' if name else ''}", hint="check the NAS mount")


def _fsync_dir(directory: Path) -> None:
    """Make new or removed entries in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # As PostgreSQL does: some filesystems refuse fsync on a directory; that is not an error.
        if exc.errno not in (errno.EBADF, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
