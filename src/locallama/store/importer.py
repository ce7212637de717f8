"""Adopt models the user already has: an Ollama store, GGUF files in the Hugging Face
cache or LM Studio's folder, or any file or folder.

Adopting writes manifests (and the small config blob) only.  The big blobs enter
the store as hard links to the user's files, or as symlinks where a hard link is
impossible (another file system): a 40 GB model is never worth storing twice, so
nothing is ever copied.  A link shares the bytes, which cuts both ways: ``rm``
removes only the link and never the user's file, but a file edited in place
changes the blob too (``BlobStore.verify`` catches that).

Candidates are found from fixed layouts and their names are derived from folder
and file names, which come from strangers: every name goes through
:func:`parse_name` and every digest through :func:`normalize_digest` before it
becomes a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from locallama.errors import (
    BadModelFile,
    InvalidModelName,
    InvalidRequest,
    ModelNotFound,
    NotSupported,
)
from locallama.gguf_info import read_gguf_info
from locallama.progress import Progress, ProgressEvent, silent
from locallama.settings import Settings
from locallama.store import manifests as mf
from locallama.store.blobs import CHUNK
from locallama.store.huggingface import GGUFFile
from locallama.store.names import DEFAULT_TAG, ModelName, parse_name
from locallama.store.partials import hold, storage_errors
from locallama.store.publish import publish
from locallama.store.store import Store

OLLAMA, HUGGINGFACE, LMSTUDIO, FILE = "ollama", "huggingface", "lmstudio", "file"
HARD_LINK, SYMLINK, STORED = "hard link", "symlink", "already stored"
#: statuses of an adoption
IMPORTED, PRESENT, SKIPPED = "imported", "present", "skipped"

_SPLIT = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)
_REPORT_EVERY = 64  # hashing progress: one event per 64 MiB

Warn = Callable[[str], None]


def _quiet(_message: str) -> None:
    """The warning callback that shows nothing."""


@dataclass(frozen=True)
class Candidate:
    """A model found outside the store, and the name it would be stored under."""

    kind: str  # OLLAMA, HUGGINGFACE, LMSTUDIO or FILE
    path: Path  # the GGUF file; for an Ollama model, its manifest
    name: ModelName
    size: int  # bytes: the file, or every blob the manifest names
    in_store: bool  # the store already has a model of this name
    source_root: Path | None = None  # an Ollama model: the store it lives in

    def to_json(self) -> dict[str, object]:
        return {"name": self.name.display, "source": self.kind, "size": self.size,
                "path": str(self.path), "in_store": self.in_store}


@dataclass(frozen=True)
class Adopted:
    """What adopting one candidate did: IMPORTED, PRESENT (nothing to do) or SKIPPED."""

    candidate: Candidate
    status: str
    detail: str = ""  # how the blobs got in, or why it was skipped

    @property
    def name(self) -> ModelName:
        return self.candidate.name

    def message(self) -> str:
        if self.status == IMPORTED:
            return f"imported {self.name.display} from {self.candidate.path} ({self.detail})"
        if self.status == PRESENT:
            return f"{self.name.display} is already in the store"
        return f"skipped {self.name.display}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name.display, "source": self.candidate.kind,
                "path": str(self.candidate.path), "status": self.status, "detail": self.detail}


# -- finding models -----------------------------------------------------------


def known_places(settings: Settings) -> list[tuple[str, Path]]:
    """Where other tools keep models on this machine (overridable from the environment)."""
    places = [(OLLAMA, settings.ollama_models), (HUGGINGFACE, settings.hf_hub_cache)]
    return places + [(LMSTUDIO, folder) for folder in settings.lmstudio_models]


def discover(store: Store, settings: Settings, warn: Warn = _quiet) -> list[Candidate]:
    """Every model found in the known places; a place that does not exist is skipped."""
    found: list[Candidate] = []
    for kind, folder in known_places(settings):
        if not folder.is_dir():
            continue
        if kind == OLLAMA:
            if is_ollama_store(folder) and not _same_folder(folder, store.root):
                found += scan_ollama(store, folder)
        elif kind == HUGGINGFACE:
            found += scan_hf_cache(store, folder, warn)
        else:
            found += scan_lmstudio(store, folder, warn)
    return found


def scan(store: Store, path: Path, warn: Warn = _quiet) -> list[Candidate]:
    """The models in a path the user gave: a file, an Ollama store, a Hugging Face
    cache, or any folder (every ``*.gguf`` under it, named after the file)."""
    path = Path(path).expanduser()
    if path.is_file():
        return [_candidate(store, FILE, path, file_model_name(path))]
    if not path.is_dir():
        raise InvalidRequest(f"{path}: no such file or folder")
    if is_ollama_store(path):
        if _same_folder(path, store.root):
            raise InvalidRequest(f"{path} is the store itself")
        return scan_ollama(store, path)
    if path.name.startswith("models--"):
        return _scan_hf_repo(store, path, warn)
    if any(p.name.startswith("models--") for p in _subfolders(path)):
        return scan_hf_cache(store, path, warn)
    return [_candidate(store, FILE, f, file_model_name(f))
            for f in _gguf_files(path) if _is_model_file(f, warn)]


def is_ollama_store(folder: Path) -> bool:
    return (folder / "manifests").is_dir() and (folder / "blobs").is_dir()


def scan_ollama(store: Store, root: Path) -> list[Candidate]:
    """An Ollama store's models keep their names; broken manifests are left out."""
    source = Store(root)
    return [Candidate(OLLAMA, source.manifest_path(entry.name), entry.name, entry.size,
                      store.exists(entry.name), root)
            for entry in sorted(source.list(), key=lambda e: e.name.display)
            if entry.broken is None or _readable(source, entry.name)]


def _readable(source: Store, name: ModelName) -> bool:
    """A manifest that parses (its blobs may be missing: adopting says so per model)."""
    try:
        source.read_manifest(name)
        return True
    except (BadModelFile, ModelNotFound):
        return False


def scan_hf_cache(store: Store, hub: Path, warn: Warn = _quiet) -> list[Candidate]:
    """``models--OWNER--REPO/snapshots/REV/**.gguf`` become ``hf.co/OWNER/REPO:QUANT``."""
    found: list[Candidate] = []
    for repo_dir in _subfolders(hub):
        if repo_dir.name.startswith("models--"):
            found += _scan_hf_repo(store, repo_dir, warn)
    return found


def _scan_hf_repo(store: Store, repo_dir: Path, warn: Warn) -> list[Candidate]:
    owner, sep, repo = repo_dir.name.removeprefix("models--").partition("--")
    snapshots = repo_dir / "snapshots"
    if not sep or not owner or not repo or not snapshots.is_dir():
        return []
    try:
        current = (repo_dir / "refs" / "main").read_text().strip()
    except OSError:
        current = ""
    # A file kept in several revisions is taken once: from the current one, else the newest.
    revisions = sorted(_subfolders(snapshots),
                       key=lambda d: (d.name != current, -d.stat().st_mtime))
    files: dict[str, Path] = {}
    for revision in revisions:
        for file in _gguf_files(revision):
            files.setdefault(file.relative_to(revision).as_posix(), file)
    return _repo_candidates(store, HUGGINGFACE, owner, repo, list(files.values()), warn)


def scan_lmstudio(store: Store, root: Path, warn: Warn = _quiet) -> list[Candidate]:
    """``PUBLISHER/REPO/**.gguf`` (LM Studio mirrors Hugging Face) become ``hf.co/…``."""
    found: list[Candidate] = []
    for publisher in _subfolders(root):
        for repo in _subfolders(publisher):
            found += _repo_candidates(store, LMSTUDIO, publisher.name, repo.name,
                                      _gguf_files(repo), warn)
    return found


def _repo_candidates(store: Store, kind: str, owner: str, repo: str, files: list[Path],
                     warn: Warn) -> list[Candidate]:
    """Name a repository's files as an ``hf.co`` pull would: the tag is the quantization;
    where that does not tell the files apart, the file's stem."""
    models = [f for f in files if _is_model_file(f, warn)]
    quants = [quantization(f.name) for f in models]
    found = []
    for file, quant in zip(models, quants, strict=True):
        if len(models) == 1:
            tag = quant or DEFAULT_TAG
        elif quant and quants.count(quant) == 1:
            tag = quant
        else:
            tag = _clean(_stem(file), 64) or DEFAULT_TAG
        try:
            name = parse_name(f"hf.co/{owner}/{repo}:{tag}")
        except InvalidModelName as exc:
            warn(f"skipping {file}: {exc}")
            continue
        found.append(_candidate(store, kind, file, name))
    return found


def quantization(filename: str) -> str | None:
    """The quantization a file name carries (``Q4_K_M``), matched as ``hf.co`` pulls match
    it: case-insensitively, between separators."""
    return GGUFFile(filename, 0, "").quantization


def file_model_name(path: Path) -> ModelName:
    """A plain file's name: the stem without its quantization, lowercased; the tag is the
    quantization (``q4_k_m``) or ``latest``."""
    stem = _stem(path)
    quant = quantization(path.name)
    model = stem
    if quant:
        model = re.sub(rf"(^|[.\-_]){quant}(?=[.\-_]|$)", "", stem, count=1,
                       flags=re.IGNORECASE)
    model = _clean(model, 80).lower() or _clean(stem, 80).lower() or "model"
    return parse_name(f"{model}:{quant.lower() if quant else DEFAULT_TAG}")


def with_name(store: Store, candidate: Candidate, name: str) -> Candidate:
    """The candidate under a name the user chose (``--name``)."""
    parsed = parse_name(name)
    return replace(candidate, name=parsed, in_store=store.exists(parsed))


def _candidate(store: Store, kind: str, path: Path, name: ModelName) -> Candidate:
    return Candidate(kind, path, name, path.stat().st_size, store.exists(name))


def _is_model_file(path: Path, warn: Warn) -> bool:
    """Split files and vision projectors are not models on their own."""
    split = _SPLIT.search(path.name)
    if split:
        if split.group(1) == "00001":
            warn(f"skipping {path}: split GGUF files are not supported yet "
                 "(merge them with llama-gguf-split --merge)")
        return False
    return "mmproj" not in path.name.lower()


def _gguf_files(folder: Path) -> list[Path]:
    """``*.gguf`` under ``folder``, hidden entries left out, symlinked folders not followed."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(files):
            path = Path(top) / file
            if not file.startswith(".") and file.lower().endswith(".gguf") and path.is_file():
                found.append(path)
    return found


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _stem(path: Path) -> str:
    name = path.name
    return name[:-5] if name.lower().endswith(".gguf") else path.stem


def _clean(text: str, limit: int) -> str:
    """``text`` cut to the characters a name part allows (no ``..``, no leading dot)."""
    text = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text)
    text = re.sub(r"\.{2,}", ".", text)
    return text.strip(".-")[:limit].rstrip(".-")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- adopting -----------------------------------------------------------------


def adopt(store: Store, candidate: Candidate, progress: Progress | None = None,
          force: bool = False) -> Adopted:
    """Put ``candidate`` in the store by linking, publishing its manifest last.

    A name already used by the same model is PRESENT and nothing is written; by a
    different model it is SKIPPED unless ``force``.  A bad model file raises
    BadModelFile and leaves the store as it was.  Links a killed import left
    behind are swept first.
    """
    store.sweep()
    if candidate.kind == OLLAMA:
        return _adopt_ollama(store, candidate, force)
    return _adopt_gguf(store, candidate, progress or silent, force)


def _adopt_ollama(store: Store, candidate: Candidate, force: bool) -> Adopted:
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
                force: bool) -> Adopted:
    """Validate, link into the blob folder, hash the linked bytes, publish.

    Hashing the link rather than the source means the blob is named after the
    bytes it actually holds, as for any other blob.
    """
    source = candidate.path
    if _SPLIT.search(source.name):
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
