"""Adopt a model found outside the store (a :class:`Candidate` from
:mod:`locallama.store.discover`): an Ollama model, or a GGUF file.

Adopting writes manifests (and the small config blob) only.  The big blobs enter
the store as hard links to the user's files, or as symlinks where a hard link is
impossible (another file system): a 40 GB model is never worth storing twice, so
nothing is ever copied.  A link shares the bytes, which cuts both ways: ``rm``
removes only the link and never the user's file, but a file edited in place
changes the blob too (``BlobStore.verify`` catches that).

Every digest goes through :func:`normalize_digest` (in the blob store and the
manifest parser) before it becomes a path.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from locallama.errors import BadModelFile, InvalidRequest, NotSupported
from locallama.gguf_info import read_gguf_info
from locallama.progress import Progress, ProgressEvent, silent
from locallama.store import manifests as mf
from locallama.store.blobs import CHUNK
from locallama.store.discover import OLLAMA, SPLIT, Candidate
from locallama.store.names import ModelName
from locallama.store.partials import hold, storage_errors
from locallama.store.publish import LoadCheck, publish
from locallama.store.store import Store

#: how a blob got into the store (an Adopted's detail)
HARD_LINK, SYMLINK, STORED = "hard link", "symlink", "already stored"
#: statuses of an adoption
IMPORTED, PRESENT, SKIPPED = "imported", "present", "skipped"

_REPORT_EVERY = 64  # hashing progress: one event per 64 MiB


@dataclass(frozen=True)
class Adopted:
    """What adopting one candidate did: IMPORTED, PRESENT (nothing to do) or SKIPPED.

    ``detail`` says how the blobs got in (``hard link``, ``symlink``, ``already
    stored``, or counts of them for an Ollama model) or why it was skipped.
    """

    candidate: Candidate
    status: str
    detail: str = ""  # how the blobs got in, or why it was skipped

    @property
    def name(self) -> ModelName:
        """The name the model is (or would have been) stored under."""
        return self.candidate.name

    def message(self) -> str:
        """The one line ``import`` prints for this result."""
        if self.status == IMPORTED:
            return f"imported {self.name.display} from {self.candidate.path} ({self.detail})"
        if self.status == PRESENT:
            return f"{self.name.display} is already in the store"
        return f"skipped {self.name.display}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        """The object ``import --json`` prints: name, source, path, status, detail."""
        return {"name": self.name.display, "source": self.candidate.kind,
                "path": str(self.candidate.path), "status": self.status, "detail": self.detail}


# -- adopting -----------------------------------------------------------------


def adopt(store: Store, candidate: Candidate, progress: Progress | None = None,
          force: bool = False, check: LoadCheck | None = None) -> Adopted:
    """Put ``candidate`` in the store by linking, publishing its manifest last.

    A name already used by the same model is PRESENT and nothing is written; by a
    different model it is SKIPPED unless ``force`` (then the old model's blobs that
    nothing else names go).  A bad model file raises BadModelFile and leaves the
    store as it was; a split GGUF or a file that can be neither hard- nor
    symlinked raises NotSupported; a failed store write raises StorageFull or
    StorageError.  Links a killed import left behind are swept first.  With
    ``check`` (the engine's trial load), a model file llama.cpp cannot load raises
    its InvalidModelFile, the store again as it was.

    ``progress`` (a GGUF file only: an Ollama model's blobs are not hashed) gets the
    hashing as pulls report a download (status ``hashing FILE``, the file's real
    path in the digest field, bytes in total and completed), then publishing's steps.
    """
    store.sweep()
    if candidate.kind == OLLAMA:
        return _adopt_ollama(store, candidate, force, check)
    return _adopt_gguf(store, candidate, progress or silent, force, check)


def _adopt_ollama(store: Store, candidate: Candidate, force: bool,
                  check: LoadCheck | None) -> Adopted:
    """Link every blob an Ollama manifest names, then write the manifest.

    The blobs are not hashed: Ollama checked them when it pulled them, and reading
    its folder in place (LOCALLAMA_MODELS=~/.ollama/models) trusts them the same
    way.  Sizes are checked and the model's GGUF header is validated.
    """
    if candidate.source_root is None:
        raise InvalidRequest(f"{candidate.name.display}: no Ollama store to import from")
    source = Store(candidate.source_root)
    manifest, _, _ = source.read_manifest(candidate.name)  # digests validated here
    for layer in (manifest.config, *manifest.layers):
        blob = source.blobs.path(layer.digest)
        if not blob.is_file():
            return Adopted(candidate, SKIPPED, f"blob {layer.digest} is missing from "
                                               f"{candidate.source_root}")
        if blob.stat().st_size != layer.size:
            return Adopted(candidate, SKIPPED, f"blob {layer.digest} has "
                                               f"{blob.stat().st_size} bytes, not {layer.size}")
    model = manifest.first(mf.MEDIA_MODEL)
    if model is None:
        return Adopted(candidate, SKIPPED, "the manifest has no model layer")
    read_gguf_info(source.blobs.path(model.digest))
    if check is not None:
        check(source.blobs.path(model.digest), model.digest)

    old = _existing(store, candidate.name)
    if old is not None:
        if old == manifest and all(store.blobs.has(d) for d in manifest.digests()):
            return Adopted(candidate, PRESENT)
        if old != manifest and not force:
            return _taken(candidate)
    ways = [STORED if store.blobs.has(d) else _link(source.blobs.path(d), store.blobs.path(d))
            for d in sorted(manifest.digests())]
    store.write_manifest(candidate.name, manifest)
    if old is not None:
        _collect(store, old)
    return Adopted(candidate, IMPORTED, _summary(ways))


def _adopt_gguf(store: Store, candidate: Candidate, report: Progress,
                force: bool, check: LoadCheck | None) -> Adopted:
    """Validate, link into the blob folder, hash the linked bytes, publish.

    Hashing the link rather than the source means the blob is named after the
    bytes it actually holds, as for any other blob.
    """
    source = candidate.path
    if SPLIT.search(source.name):
        raise NotSupported(f"{source}: split GGUF files are not supported yet "
                           "(merge them with llama-gguf-split --merge)")
    info = read_gguf_info(source)
    real = source.resolve()
    old = _existing(store, candidate.name)
    old_model = old.first(mf.MEDIA_MODEL) if old else None
    if old_model is not None and _is_same_file(store.blobs.path(old_model.digest), real):
        return Adopted(candidate, PRESENT)  # this very file: no need to hash it again

    with storage_errors(store.blobs.root):
        store.blobs.root.mkdir(parents=True, exist_ok=True)
    fd, temp, how = _held_link(real, store.blobs.root)
    try:
        digest = _hash(temp, f"hashing {source.name}", str(real), report)
        if old_model is not None and old_model.digest == digest:
            temp.unlink()
            return Adopted(candidate, PRESENT)
        if old is not None and not force:
            temp.unlink()
            return _taken(candidate)
        if check is not None:
            report(ProgressEvent("checking that llama.cpp loads the model"))
            check(temp, digest)
        if store.blobs.has(digest):
            temp.unlink()
            how = STORED
        else:
            with storage_errors(store.blobs.root):
                os.replace(temp, store.blobs.path(digest))
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    publish(store, candidate.name, digest, info, {}, None, report)
    if old is not None:
        _collect(store, old)
    return Adopted(candidate, IMPORTED, how)


def _existing(store: Store, name: ModelName) -> mf.Manifest | None:
    """The manifest now stored under ``name``; an unreadable one counts as another model."""
    if not store.exists(name):
        return None
    try:
        return store.read_manifest(name)[0]
    except BadModelFile:
        return mf.Manifest(mf.Layer("", "sha256:" + "0" * 64, 0))


def _taken(candidate: Candidate) -> Adopted:
    return Adopted(candidate, SKIPPED, "the store has a different model of that name "
                                       "(--force replaces it, --name chooses another)")


def _collect(store: Store, old: mf.Manifest) -> None:
    """After replacing a model, remove the blobs only the old manifest used."""
    for digest in old.digests() - store.referenced_digests():
        store.blobs.remove(digest)


# -- linking and hashing ------------------------------------------------------


def _link(source: Path, target: Path) -> str:
    """Put ``source`` at ``target`` (atomically, replacing a dangling link there)."""
    with storage_errors(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp, how = _held_link(source, target.parent)
    try:
        with storage_errors(target):
            os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return how


def _held_link(source: Path, folder: Path) -> tuple[int, Path, str]:
    """A link to ``source`` under a hidden temporary name in ``folder``, locked (see
    ``partials``) so that a sweep leaves it alone while it is in use; (fd, path, how)."""
    while True:
        temp = folder / f".import-{secrets.token_hex(8)}.partial"
        how = _make_link(source, temp)
        try:
            fd = hold(temp)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if fd is not None:
            return fd, temp, how


def _make_link(source: Path, at: Path) -> str:
    """A hard link to ``source``, else a symlink to its absolute path; never a copy."""
    real = source.resolve()
    try:
        os.link(real, at)
        return HARD_LINK
    except OSError as hard:
        try:
            os.symlink(real, at)
        except OSError as soft:
            raise NotSupported(
                f"cannot link {source} into the store ({hard.strerror or hard}; "
                f"{soft.strerror or soft}); import never copies: `locallama create` "
                "with FROM the file copies it") from None
        return SYMLINK


def _is_same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _hash(path: Path, status: str, key: str, report: Progress) -> str:
    """sha256 of ``path``, reporting progress as pulls do (``key`` in the digest field)."""
    total = path.stat().st_size
    h = hashlib.sha256()
    done = 0
    report(ProgressEvent(status, key, total, 0))
    with path.open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(CHUNK), b""), start=1):
            h.update(block)
            done += len(block)
            if i % _REPORT_EVERY == 0:
                report(ProgressEvent(status, key, total, done))
    report(ProgressEvent(status, key, total, done))
    return "sha256:" + h.hexdigest()


def _summary(ways: Iterable[str]) -> str:
    """'2 hard links, 1 already stored' for the blobs of one manifest."""
    counts: dict[str, int] = {}
    for way in ways:
        counts[way] = counts.get(way, 0) + 1
    plural = {HARD_LINK: "hard links", SYMLINK: "symlinks", STORED: "already stored"}
    return ", ".join(f"{n} {way if n == 1 else plural[way]}" for way, n in counts.items())
