"""Content-addressed blobs: ``blobs/sha256-<hex>``, written atomically, verified.

A blob enters the store only under the digest of its bytes: data is hashed while
it is written to a temporary file beside its final place, and the rename that
publishes it happens only after the digest is known (and, when one was
announced, matched).  A crash leaves at most a ``.partial`` file, never a wrong
blob, and the writer's lock on it lets the next sweep (``partials.sweep``) remove it.
A failed write (disk full, permission denied) raises StorageFull / StorageError.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from locallama.errors import DigestMismatch, InvalidRequest
from locallama.store.partials import locked_temp, storage_errors

_DIGEST = re.compile(r"sha256[:\-]([0-9a-f]{64})")
CHUNK = 1 << 20


def normalize_digest(digest: str) -> str:
    """Return ``sha256:<hex>`` for either spelling, or raise InvalidRequest."""
    match = _DIGEST.fullmatch(digest.strip())
    if not match:
        raise InvalidRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return f"sha256:{match.group(1)}"


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return "sha256:" + h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one.

    The bytes go to a locked hidden ``.<name>.XXXX.tmp`` beside ``path`` first
    (see ``partials``); an OSError becomes StorageFull / StorageError and leaves
    no temporary file.
    """
    with locked_temp(path.parent, f".{path.name}.", ".tmp") as (fd, tmp), \
            storage_errors(path.parent, len(data), partial=tmp):
        write_all(fd, data)
        os.fsync(fd)
        os.replace(tmp, path)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may take only part); unbuffered,
    so a full disk raises here and not later when a buffer is closed."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class BlobStore:
    """The ``blobs`` folder of a store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / normalize_digest(digest).replace(":", "-")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read_bytes(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def add_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return its digest and size.  Idempotent."""
        digest = digest_bytes(data)
        target = self.path(digest)
        if not target.is_file():
            atomic_write_bytes(target, data)
        return digest, len(data)

    def add_stream(
        self, stream: BinaryIO | Iterable[bytes], expected: str | None = None,
        needed: int | None = None,
    ) -> tuple[str, int]:
        """Copy a stream into the store, hashing as it goes; return (digest, size).

        With ``expected``, bytes that hash to anything else never enter the store
        and DigestMismatch is raised.  A failed write raises StorageFull (its
        message quotes ``needed`` bytes when given) or StorageError; either way no
        temporary file is left.
        """
        want = normalize_digest(expected) if expected else None
        h = hashlib.sha256()
        size = 0
        # Only the writes are the store's faults; a stream that fails (a cut upload)
        # raises its own error.  Either way the temporary file goes.
        with locked_temp(self.root, ".blob-") as (fd, tmp):
            for block in _blocks(stream):
                h.update(block)
                with storage_errors(self.root, needed, partial=tmp):
                    write_all(fd, block)
                size += len(block)
            with storage_errors(self.root, needed, partial=tmp):
                os.fsync(fd)
            digest = "sha256:" + h.hexdigest()
            if want and digest != want:
                raise DigestMismatch(f"digest mismatch: expected {want}, got {digest}")
            target = self.path(digest)
            if not target.is_file():
                with storage_errors(self.root):
                    os.replace(tmp, target)
            return digest, size

    def add_file(self, path: Path) -> tuple[str, int]:
        """Copy the file at ``path`` into the store; return (digest, size)."""
        with path.open("rb") as f:
            return self.add_stream(f, needed=os.fstat(f.fileno()).st_size)

    def verify(self, digest: str) -> bool:
        """True when the blob's bytes still hash to its name."""
        return digest_file(self.path(digest)) == normalize_digest(digest)

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        found = set()
        for entry in self.root.iterdir():
            match = _DIGEST.fullmatch(entry.name)
            if match and entry.is_file():
                found.add(f"sha256:{match.group(1)}")
        return found


def _blocks(stream: BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    if hasattr(stream, "read"):
        while block := stream.read(CHUNK):  # type: ignore[union-attr]
            yield block
    else:
        yield from stream  # type: ignore[misc]
