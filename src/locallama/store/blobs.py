"""Content-addressed blobs: ``blobs/sha256-<hex>``, written atomically, verified.

A blob enters the store only under the digest of its bytes: data is hashed while
it is written to a temporary file beside its final place, and the rename that
publishes it happens only after the digest is known (and, when one was
announced, matched).  A crash leaves at most a ``.partial`` file, never a wrong
blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from locallama.errors import DigestMismatch, InvalidRequest

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
    """Write ``data`` to ``path`` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        self, stream: BinaryIO | Iterable[bytes], expected: str | None = None
    ) -> tuple[str, int]:
        """Copy a stream into the store, hashing as it goes.

        With ``expected``, bytes that hash to anything else never enter the store
        and DigestMismatch is raised.
        """
        want = normalize_digest(expected) if expected else None
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".blob-", suffix=".partial", dir=self.root)
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for block in _blocks(stream):
                    h.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if want and digest != want:
                raise DigestMismatch(f"digest mismatch: expected {want}, got {digest}")
            target = self.path(digest)
            if target.is_file():
                Path(tmp).unlink()
            else:
                os.replace(tmp, target)
            return digest, size
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add_file(self, path: Path) -> tuple[str, int]:
        with path.open("rb") as f:
            return self.add_stream(f)

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
