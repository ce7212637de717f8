"""Resumable, verified blob downloads into the store.

A blob streams into ``blobs/sha256-<hex>-partial``; an interrupted download
(a dropped connection, a killed process) resumes from what the partial file
holds with an HTTP Range request, and the bytes already there are hashed again
first.  Only bytes that hash to the expected digest are renamed into place, so
the store never holds a blob that lies about its name.  An exclusive lock per
digest (``flock``, which also separates threads of one process) makes two
pulls of one blob download it once: the second finds it in place.  A write
that fails (disk full, permission denied) removes the partial file and raises
StorageFull / StorageError; a cut connection keeps it for the next pull.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from locallama.errors import DigestMismatch, PullError
from locallama.progress import Progress, ProgressEvent
from locallama.store.blobs import BlobStore, normalize_digest
from locallama.store.partials import storage_error, storage_errors

CHUNK = 1 << 20
RETRIES = 3  # attempts per blob before giving up (each resumes where the last stopped)


def fetch_blob(client: httpx.Client, url: str, blobs: BlobStore, digest: str,
               size: int | None, report: Progress) -> None:
    """Download ``url`` into ``blobs`` under ``digest`` unless it is there already."""
    digest = normalize_digest(digest)
    target = blobs.path(digest)
    status = f"pulling {digest[7:19]}"
    if target.is_file():
        report(ProgressEvent(status, digest, size, size))
        return
    partial = target.with_name(target.name + "-partial")
    lock = target.with_name(target.name + "-partial.lock")
    with _exclusive(lock), _stored_or_removed(partial, blobs.root, size):
        if target.is_file():  # another pull finished it while we waited
            report(ProgressEvent(status, digest, size, size))
            return
        hasher = _resumable(client, url, partial, size,
                            lambda n, _: report(ProgressEvent(status, digest, size, n)),
                            f"download of {digest[7:19]}")
        got = "sha256:" + hasher.hexdigest()
        if got != digest:
            partial.unlink(missing_ok=True)
            raise DigestMismatch(f"digest mismatch for {url}: expected {digest}, got {got}; "
                                 "nothing was stored")
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
        lock.unlink(missing_ok=True)  # a pull still waiting on it finds the blob in place


def fetch_url(client: httpx.Client, url: str, blobs: BlobStore, report: Progress
              ) -> tuple[str, int]:
    """Download a file whose digest is not known in advance; return (digest, size).

    The partial file is named for the URL, so a second run resumes it too.
    """
    partial = blobs.root / f"url-{hashlib.sha256(url.encode()).hexdigest()[:24]}-partial"
    lock = partial.with_name(partial.name + ".lock")
    status = f"pulling {url.rsplit('/', 1)[-1][:40]}"
    with _exclusive(lock), _stored_or_removed(partial, blobs.root, None):
        hasher = _resumable(client, url, partial, None,
                            lambda n, total: report(ProgressEvent(status, None, total, n)),
                            f"download of {url}")
        have = partial.stat().st_size
        digest = "sha256:" + hasher.hexdigest()
        target = blobs.path(digest)
        if target.is_file():
            partial.unlink()
        else:
            with partial.open("rb") as f:
                os.fsync(f.fileno())
            os.replace(partial, target)
        lock.unlink(missing_ok=True)
    return digest, have


def http_client(timeout: float = 30.0) -> httpx.Client:
    """The client every pull uses: redirects followed (hubs redirect to CDNs), a long
    read timeout for big blobs."""
    return httpx.Client(timeout=httpx.Timeout(timeout, read=300.0), follow_redirects=True,
                        headers={"User-Agent": "locallama"})


def _resumable(client: httpx.Client, url: str, partial: Path, size: int | None,
               progress, what: str):
    """Fill ``partial`` from ``url``, resuming from what it holds, retrying a cut
    connection; return the sha256 hasher over the whole file."""
    hasher, have = _hash_partial(partial)
    for attempt in range(1, RETRIES + 1):
        try:
            hasher, have = _stream(client, url, partial, hasher, have, size, progress)
            return hasher
        except (httpx.TransportError, _Short) as exc:
            if attempt == RETRIES:
                raise PullError(f"{what} was interrupted ({_why(exc)}); "
                                "run the pull again to resume") from None
            hasher, have = _hash_partial(partial)  # what reached the disk counts
    return hasher


class _Short(Exception):
    """The server closed the body before the promised size."""


def _stream(client: httpx.Client, url: str, partial: Path, hasher, have: int,
            size: int | None, progress) -> tuple:
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if have and response.status_code == 416 and size == have:
            return hasher, have  # the partial file was already complete
        if response.status_code >= 400:
            raise PullError(f"{url}: the server answered {response.status_code}")
        if have and response.status_code != 206:  # no Range support: start over
            hasher, have = hashlib.sha256(), 0
            partial.write_bytes(b"")
        if size is None and response.headers.get("Content-Length", "").isdigit():
            size = have + int(response.headers["Content-Length"])
        reported = 0
        with partial.open("ab") as out:
            for block in response.iter_bytes():  # as it arrives, so a cut loses nothing
                out.write(block)
                hasher.update(block)
                have += len(block)
                if have - reported >= CHUNK or have == size:
                    progress(have, size)
                    reported = have
            out.flush()
    if size is not None and have < size:
        raise _Short(f"{have} of {size} bytes")
    return hasher, have


def _hash_partial(partial: Path):
    hasher, have = hashlib.sha256(), 0
    if partial.is_file():
        with partial.open("rb") as f:
            while block := f.read(CHUNK):
                hasher.update(block)
                have += len(block)
    return hasher, have


@contextmanager
def _stored_or_removed(partial: Path, folder: Path, size: int | None) -> Iterator[None]:
    """A write that fails (disk full, permission denied) removes the partial file, which
    could not be finished here anyway, and raises StorageFull / StorageError."""
    try:
        yield
    except OSError as exc:
        with suppress(OSError):
            partial.unlink()
        raise storage_error(exc, folder, size) from exc


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with storage_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
