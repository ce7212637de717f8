"""Temporary files in the store, and what a failed write becomes.

Every file the store writes before it is complete (a blob being uploaded, copied,
quantized, assembled or linked; a manifest or small blob on its way to an
atomic rename) is a hidden ``.<something>.partial`` or ``.<something>.tmp`` file
beside its final place, and its writer holds an exclusive ``flock`` on it for as
long as it lives.  A writer that is killed loses its lock with its process, so
:func:`sweep` can tell a live writer's file (lock held: left alone) from one
left behind (lock free: removed), even when two processes share one store (a
CLI ``pull`` while ``serve`` runs).  Resumable downloads
(``sha256-<hex>-partial``, ``url-<hash>-partial``) are kept for the next pull
of the same blob or URL, which resumes them (see ``download.py``).

An ``OSError`` from a write becomes :class:`~locallama.errors.StorageFull`
(ENOSPC, EDQUOT) or :class:`~locallama.errors.StorageError` (anything else:
EACCES, EPERM, EROFS, EIO, ...) with one line naming the path and the reason.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from locallama.errors import StorageError, StorageFull
from locallama.units import format_bytes

#: suffixes of the hidden temporary files writers here make (``.name.XXXX.tmp``,
#: ``.blob-XXXX.partial``, ``.quantize-…``, ``.import-…``, ``.bundled-…``)
TEMP_SUFFIXES = (".partial", ".tmp")
#: errnos that mean the device is full
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "input/output error (is the disk failing?)",
}


# -- temporary files under a lock ---------------------------------------------------------


def create_temp(folder: Path, prefix: str, suffix: str = ".partial") -> tuple[int, Path]:
    """A new empty temporary file in ``folder``, open for writing and locked.

    Returns ``(fd, path)``; the exclusive ``flock`` on ``fd`` is what tells
    :func:`sweep` that the file is in use, so keep ``fd`` open until the file is
    renamed into place or removed.  ``prefix`` should start with a dot (hidden).
    Raises StorageError / StorageFull when the file cannot be made.
    """
    with storage_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
            path = Path(name)
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a sweep looks at it
            if _still_there(fd, path):
                return fd, path
            os.close(fd)  # swept between mkstemp and the lock: make another


def hold(path: Path) -> int | None:
    """Lock an existing temporary file (e.g. a link just made at ``path``).

    Returns the locked fd to keep open while the file is in use, or None when the
    file was swept away before the lock was taken (the caller makes it again).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    if _still_there(fd, path):
        return fd
    os.close(fd)
    return None


@contextmanager
def locked_temp(folder: Path, prefix: str, suffix: str = ".partial") -> Iterator[tuple[int, Path]]:
    """:func:`create_temp` as a context: on leaving, the lock is released and the file,
    if still at its temporary name (not renamed into place), removed."""
    fd, path = create_temp(folder, prefix, suffix)
    try:
        yield fd, path
    finally:
        _unlink(path)
        os.close(fd)


def _still_there(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open at ``fd``."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


# -- the sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Swept:
    """What :func:`sweep` did: files removed and the bytes that freed, and the
    resumable downloads kept (``kept`` files, ``kept_bytes`` bytes)."""

    removed: int = 0
    freed: int = 0
    kept: int = 0
    kept_bytes: int = 0


def is_temp_name(name: str) -> bool:
    """A hidden temporary file a writer here makes (not a resumable download)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIXES)


def is_resumable_name(name: str) -> bool:
    """A download a later pull resumes: ``sha256-<hex>-partial`` or ``url-<hash>-partial``."""
    return name.endswith("-partial") and name.startswith(("sha256-", "url-"))


def sweep(*folders: Path) -> Swept:
    """Remove the temporary files under ``folders`` that no live writer holds.

    A file whose lock is held is being written right now and is left alone; a
    resumable download is kept and counted.  Links (an import's hard link or
    symlink to a user's file) are removed as links; the user's file stays, and
    its bytes do not count as freed.  Errors on single files are skipped: a sweep
    never stops the command that runs it.
    """
    removed = freed = kept = kept_bytes = 0
    for folder in folders:
        for path in _walk(folder):
            if is_resumable_name(path.name):
                kept += 1
                kept_bytes += _size(path)
            elif is_temp_name(path.name):
                size = _remove_if_abandoned(path)
                if size is not None:
                    removed += 1
                    freed += size
    return Swept(removed, freed, kept, kept_bytes)


def _walk(folder: Path) -> Iterator[Path]:
    try:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                yield Path(root, name)
    except OSError:
        return


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_if_abandoned(path: Path) -> int | None:
    """Unlink ``path`` if no writer holds it; the bytes freed, or None when kept."""
    try:
        link = os.lstat(path)
    except OSError:
        return None
    if not (stat.S_ISREG(link.st_mode) or stat.S_ISLNK(link.st_mode)):
        return None  # not something a writer here makes
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        if stat.S_ISLNK(link.st_mode):  # a dangling link: nobody can be writing it
            return 0 if _unlink(path) else None
        return None
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live writer holds it
        if not _still_there(fd, path):
            return None
        info = os.fstat(fd)
        own = not stat.S_ISLNK(link.st_mode) and info.st_nlink == 1
        return (info.st_size if own else 0) if _unlink(path) else None
    finally:
        os.close(fd)  # releases the lock


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return False


# -- OSError -> StorageError ------------------------------------------------------------


def storage_error(exc: OSError, path: Path, needed: int | None = None, *,
                  partial: Path | None = None) -> StorageError:
    """The typed error for a failed write at ``path``.

    ENOSPC / EDQUOT give StorageFull: "no space left on the device that holds
    PATH (needed ~X, free Y)", ``needed`` in bytes when known.  ``partial`` is the
    temporary file the failed write went to, if any: on a full disk it is emptied
    first (it cannot be finished, and its writer removes it anyway), so Y is the
    space free without it, not the nothing it left.  Anything else gives
    StorageError: "cannot write PATH: REASON", and ``partial`` is left as it is.
    """
    if exc.errno in FULL:
        if partial is not None:
            with suppress(OSError):  # its writer may still hold it open: emptying frees it
                os.truncate(partial, 0)
        free = _free(path)
        parts = [f"needed ~{format_bytes(needed)}"] if needed else []
        if free is not None:
            parts.append(f"free {format_bytes(free)}")
        detail = f" ({', '.join(parts)})" if parts else ""
        kind = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left"
        return StorageFull(f"{kind} on the device that holds {path}{detail}")
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
    where = Path(os.fsdecode(exc.filename)) if isinstance(exc.filename, (str, bytes)) else path
    if is_temp_name(where.name) or is_resumable_name(where.name):
        where = where.parent  # a temporary name means nothing to a user; its folder does
    return StorageError(f"cannot write {where}: {reason}")


@contextmanager
def storage_errors(path: Path, needed: int | None = None, *,
                   partial: Path | None = None) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into StorageFull / StorageError
    (see :func:`storage_error` for ``needed`` and ``partial``)."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, path, needed, partial=partial) from exc


def _free(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None
