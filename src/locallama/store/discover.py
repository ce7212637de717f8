"""Find the models other tools keep on this machine, and name them for the store.

The known places come from :class:`Settings` (an Ollama store at ``OLLAMA_MODELS``,
the Hugging Face cache, LM Studio's folders); a path the user gives may be any of
those, a GGUF file, or a folder of them.  Each model found becomes a
:class:`Candidate`: where it is, how big, and the name it would be stored under
(Ollama names kept; ``hf.co/OWNER/REPO:QUANT`` for a repository's files; a plain
file's stem and quantization).  Nothing here writes: :mod:`locallama.store.importer`
adopts a candidate.

Candidates are found from fixed layouts and their names are derived from folder
and file names, which come from strangers: every name goes through
:func:`parse_name` before it becomes a path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from locallama.errors import BadModelFile, InvalidModelName, InvalidRequest, ModelNotFound
from locallama.settings import Settings
from locallama.store.huggingface import GGUFFile
from locallama.store.names import DEFAULT_TAG, ModelName, parse_name
from locallama.store.store import Store

#: kinds of candidate: where a model was found
OLLAMA, HUGGINGFACE, LMSTUDIO, FILE = "ollama", "huggingface", "lmstudio", "file"

#: one part of a split GGUF (``NAME-00001-of-00003.gguf``); group 1 is the part number
SPLIT = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)

Warn = Callable[[str], None]


def _quiet(_message: str) -> None:
    """The warning callback that shows nothing."""


@dataclass(frozen=True)
class Candidate:
    """A model found outside the store, and the name it would be stored under.

    Built by :func:`discover` and :func:`scan` only; ``in_store`` is true when the
    store holds a model of that name now (the same model or not: adopting decides).
    """

    kind: str  # OLLAMA, HUGGINGFACE, LMSTUDIO or FILE
    path: Path  # the GGUF file; for an Ollama model, its manifest
    name: ModelName
    size: int  # bytes: the file, or every blob the manifest names
    in_store: bool  # the store already has a model of this name
    source_root: Path | None = None  # an Ollama model: the store it lives in

    def to_json(self) -> dict[str, object]:
        """The object ``import --json`` lists: name, source (the kind), size (bytes),
        path and in_store."""
        return {"name": self.name.display, "source": self.kind, "size": self.size,
                "path": str(self.path), "in_store": self.in_store}


# -- finding models -----------------------------------------------------------


def known_places(settings: Settings) -> list[tuple[str, Path]]:
    """Where other tools keep models on this machine, as (kind, folder) pairs in the
    order :func:`discover` reads them: Ollama's store, the Hugging Face cache, then each
    LM Studio folder (all from ``settings``, so overridable from the environment)."""
    places = [(OLLAMA, settings.ollama_models), (HUGGINGFACE, settings.hf_hub_cache)]
    return places + [(LMSTUDIO, folder) for folder in settings.lmstudio_models]


def discover(store: Store, settings: Settings, warn: Warn = _quiet) -> list[Candidate]:
    """Every model found in the known places, in :func:`known_places`' order; a place
    that does not exist is skipped, and so is an Ollama store that is ``store`` itself.

    ``warn`` gets one line per file left out (a split GGUF, a name that cannot be
    made valid); nothing is raised for what a place holds.
    """
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
    cache or one repository folder of it (``models--OWNER--REPO``), or any folder
    (every ``*.gguf`` under it, named after the file).

    Raises InvalidRequest when ``path`` does not exist or is ``store`` itself; a file
    given by path is a candidate whatever its name (adopting validates it).
    """
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
    """Whether ``folder`` has Ollama's layout (``manifests/`` and ``blobs/``)."""
    return (folder / "manifests").is_dir() and (folder / "blobs").is_dir()


def scan_ollama(store: Store, root: Path) -> list[Candidate]:
    """The models of the Ollama store at ``root``, sorted by name: they keep their
    names, and manifests that do not parse are left out (a missing blob is not checked
    here: adopting reports it per model)."""
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
    """One ``models--OWNER--REPO`` folder of the cache; a name without both parts, or
    without snapshots, holds nothing."""
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


def _candidate(store: Store, kind: str, path: Path, name: ModelName) -> Candidate:
    """A candidate for one GGUF file: its size, and whether ``name`` is taken."""
    return Candidate(kind, path, name, path.stat().st_size, store.exists(name))


def _is_model_file(path: Path, warn: Warn) -> bool:
    """Split files and vision projectors are not models on their own."""
    split = SPLIT.search(path.name)
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
    """The visible folders in ``folder``, sorted; none when it cannot be read."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _same_folder(a: Path, b: Path) -> bool:
    """Whether two paths are one folder (links resolved)."""
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- naming them ---------------------------------------------------------------


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
    """The candidate under a name the user chose (``--name``), ``in_store`` recomputed.

    Raises InvalidModelName when ``name`` is not a valid model name.
    """
    parsed = parse_name(name)
    return replace(candidate, name=parsed, in_store=store.exists(parsed))


def _stem(path: Path) -> str:
    """The file name without ``.gguf`` (any case)."""
    name = path.name
    return name[:-5] if name.lower().endswith(".gguf") else path.stem


def _clean(text: str, limit: int) -> str:
    """``text`` cut to the characters a name part allows (no ``..``, no leading dot)."""
    text = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text)
    text = re.sub(r"\.{2,}", ".", text)
    return text.strip(".-")[:limit].rstrip(".-")
