"""The model store: manifests by name, blobs by digest, in Ollama's layout.

``<root>/manifests/<host>/<namespace>/<model>/<tag>`` holds a manifest, and
``<root>/blobs/sha256-<hex>`` the blobs it names.  A folder written by Ollama
reads as is.  Paths are only ever built from a parsed :class:`ModelName` or a
validated digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locallama.errors import BadModelFile, ModelNotFound
from locallama.runtime.types import Details, ModelEntry, ModelName
from locallama.store import manifests as mf
from locallama.store.blobs import BlobStore, atomic_write_bytes, digest_bytes
from locallama.store.names import parse_name
from locallama.store.partials import Swept, storage_errors, sweep

_DIGEST_TEXT = re.compile(r"sha256[:\-]([0-9a-f]{64})(?![0-9a-f])")


@dataclass(frozen=True)
class ModelRecord:
    """A stored model with its small layers read: what the runtime needs to run it."""

    name: ModelName
    manifest: mf.Manifest
    digest: str  # sha256 of the manifest bytes; its first 12 hex digits are the ID
    modified: datetime
    model_path: Path
    config: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)
    projectors: list[Path] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @property
    def size(self) -> int:
        return self.manifest.size


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = BlobStore(self.root / "blobs")
        self.manifest_root = self.root / "manifests"

    # -- names and manifests ------------------------------------------------

    def manifest_path(self, name: ModelName) -> Path:
        """The manifest's path; an existing one that differs only in case wins."""
        exact = self.manifest_path_exact(name)
        if exact.is_file():
            return exact
        for entry in self._manifest_files():
            found = self._name_of(entry)
            if found is not None and found.key() == name.key():
                return entry
        return exact

    def manifest_path_exact(self, name: ModelName) -> Path:
        return self.manifest_root.joinpath(*name.parts)

    def exists(self, name: ModelName | str) -> bool:
        name = parse_name(name) if isinstance(name, str) else name
        return self.manifest_path(name).is_file()

    def read_manifest(self, name: ModelName) -> tuple[mf.Manifest, bytes, Path]:
        path = self.manifest_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelNotFound(name.display) from None
        except OSError as exc:
            raise BadModelFile(f"cannot read manifest of {name.display}: {exc}") from None
        return mf.parse_manifest(data, where=f"manifest of {name.display}"), data, path

    def write_manifest(self, name: ModelName, manifest: mf.Manifest) -> None:
        """Publish a manifest atomically, once every blob it names is present."""
        missing = [d for d in sorted(manifest.digests()) if not self.blobs.has(d)]
        if missing:
            raise BadModelFile(f"cannot write {name.display}: missing blob {missing[0]}")
        existing = self.manifest_path(name)
        if existing.is_file() and existing != self.manifest_path_exact(name):
            with storage_errors(existing):
                existing.unlink()  # same name in other case: replace, don't duplicate
        atomic_write_bytes(self.manifest_path_exact(name), manifest.to_bytes())

    # -- queries --------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        """Every stored model, newest first; one whose manifest cannot be used is
        listed with ``broken`` set to the reason rather than failing the listing."""
        entries = []
        for path in self._manifest_files():
            name = self._name_of(path)
            if name is None:
                continue
            entry = self._entry(name, path)
            if entry is not None:
                entries.append(entry)
        entries.sort(key=lambda e: e.modified, reverse=True)
        return entries

    def _entry(self, name: ModelName, path: Path) -> ModelEntry | None:
        try:
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # removed while we looked
        except OSError as exc:
            return ModelEntry(name, digest_bytes(b""), 0, datetime.fromtimestamp(0, tz=UTC),
                              broken=f"cannot read the manifest: {exc.strerror or exc}")
        broken = None
        try:
            manifest = mf.parse_manifest(data, where="the file")
        except BadModelFile as exc:
            return ModelEntry(name, digest_bytes(data), 0, modified, broken=str(exc))
        missing = sorted(d for d in manifest.digests() if not self.blobs.has(d))
        if manifest.first(mf.MEDIA_MODEL) is None:
            broken = "the manifest has no model layer"
        elif missing:
            broken = f"blob {missing[0].replace(':', '-')} is missing"
        config = {}
        if manifest.config.digest not in missing:
            try:
                config = self._blob_json(manifest.config.digest, {})
            except BadModelFile as exc:
                broken = broken or str(exc)
        details = Details.from_config(config if isinstance(config, dict) else {})
        return ModelEntry(name, digest_bytes(data), manifest.size, modified, details, broken)

    def get(self, name: ModelName | str) -> ModelRecord:
        """Resolve a name to a runnable record, reading its small layers.

        ModelNotFound when nothing is stored under ``name``; BadModelFile, naming
        the fault and how to remove the model, when its manifest or a blob it
        names is unusable.
        """
        name = parse_name(name) if isinstance(name, str) else name
        try:
            return self._record(name)
        except BadModelFile as exc:
            raise BadModelFile(f"{exc} (remove it with 'locallama rm {name.display}')") from None

    def _record(self, name: ModelName) -> ModelRecord:
        manifest, data, path = self.read_manifest(name)
        model_layer = manifest.first(mf.MEDIA_MODEL)
        if model_layer is None:
            raise BadModelFile(f"{name.display} has no model layer")
        model_path = self.blobs.path(model_layer.digest)
        if not model_path.is_file():
            raise BadModelFile(f"{name.display}: model blob {model_layer.digest} is missing")
        projectors = [self.blobs.path(la.digest) for la in manifest.all(mf.MEDIA_PROJECTOR)]
        for layer, projector in zip(manifest.all(mf.MEDIA_PROJECTOR), projectors, strict=True):
            if not projector.is_file():  # loading would fail on it, deep in the engine
                raise BadModelFile(f"{name.display}: projector blob {layer.digest} is missing")
        template = self._text(manifest, mf.MEDIA_TEMPLATE)
        system = self._text(manifest, mf.MEDIA_SYSTEM)
        params = self._json(manifest, mf.MEDIA_PARAMS, {})
        messages = self._json(manifest, mf.MEDIA_MESSAGES, [])
        return ModelRecord(
            name=name,
            manifest=manifest,
            digest=digest_bytes(data),
            modified=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
            model_path=model_path,
            config=self._blob_json(manifest.config.digest, {}),
            template=template,
            system=system,
            params=params if isinstance(params, dict) else {},
            messages=messages if isinstance(messages, list) else [],
            licenses=[self._blob_text(la.digest) for la in manifest.all(mf.MEDIA_LICENSE)],
            adapters=[self.blobs.path(la.digest) for la in manifest.all(mf.MEDIA_ADAPTER)],
            projectors=projectors,
        )

    # -- changes --------------------------------------------------------------

    def copy(self, source: ModelName | str, destination: ModelName | str) -> ModelName:
        src = parse_name(source) if isinstance(source, str) else source
        dst = parse_name(destination) if isinstance(destination, str) else destination
        manifest, _, _ = self.read_manifest(src)
        self.write_manifest(dst, manifest)
        return dst

    def delete(self, name: ModelName | str) -> None:
        """Remove a manifest, then every blob it used that no other manifest uses.

        A broken manifest (bad JSON, malformed digest) is removed too: the blobs
        it names are whatever digests its text holds.  ModelNotFound when there is
        no such model; StorageError when the manifest cannot be removed.
        """
        name = parse_name(name) if isinstance(name, str) else name
        path = self.manifest_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelNotFound(name.display) from None
        except OSError:
            data = b""
        with storage_errors(path):
            path.unlink()
        self._prune_dirs(path.parent)
        still_used = self.referenced_digests()
        for digest in _digests_in(data) - still_used:
            with storage_errors(self.blobs.root):
                self.blobs.remove(digest)

    def referenced_digests(self) -> set[str]:
        """Every digest a manifest names; for a broken one, every digest its text holds
        (so that removing one model never takes a blob a broken one may still need)."""
        used: set[str] = set()
        for path in self._manifest_files():
            try:
                used |= _digests_in(path.read_bytes())
            except OSError:
                continue
        return used

    def sweep(self) -> Swept:
        """Remove temporary files that writers killed mid-write left in the store
        (see ``partials.sweep``); resumable downloads are kept."""
        return sweep(self.blobs.root, self.manifest_root)

    def add_json_blob(self, value: Any) -> tuple[str, int]:
        return self.blobs.add_bytes(json.dumps(value, separators=(",", ":")).encode())

    # -- internals ------------------------------------------------------------

    def _manifest_files(self) -> list[Path]:
        if not self.manifest_root.is_dir():
            return []
        return [
            p
            for p in self.manifest_root.glob("*/*/*/*")
            if p.is_file() and not p.name.startswith(".")
        ]

    def _name_of(self, path: Path) -> ModelName | None:
        host, namespace, model, tag = path.relative_to(self.manifest_root).parts
        try:
            return parse_name(f"{host}/{namespace}/{model}:{tag}")
        except Exception:
            return None

    def _prune_dirs(self, folder: Path) -> None:
        while folder != self.manifest_root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def _text(self, manifest: mf.Manifest, media_type: str) -> str | None:
        layer = manifest.first(media_type)
        return self._blob_text(layer.digest) if layer else None

    def _json(self, manifest: mf.Manifest, media_type: str, default: Any) -> Any:
        layer = manifest.first(media_type)
        return self._blob_json(layer.digest, default) if layer else default

    def _blob_text(self, digest: str) -> str:
        try:
            return self.blobs.read_bytes(digest).decode("utf-8", errors="replace")
        except OSError:
            raise BadModelFile(f"blob {digest} is missing or unreadable") from None

    def _blob_json(self, digest: str, default: Any) -> Any:
        try:
            return json.loads(self._blob_text(digest))
        except json.JSONDecodeError:
            return default


def _digests_in(data: bytes) -> set[str]:
    """The digests a manifest names: parsed when it parses, else found in its text."""
    try:
        return mf.parse_manifest(data).digests()
    except BadModelFile:
        text = data.decode("utf-8", errors="replace")
        return {f"sha256:{m}" for m in _DIGEST_TEXT.findall(text)}
