"""The model store: manifests by name, blobs by digest, in Ollama's layout.

``<root>/manifests/<host>/<namespace>/<model>/<tag>`` holds a manifest, and
``<root>/blobs/sha256-<hex>`` the blobs it names.  A folder written by Ollama
reads as is.  Paths are only ever built from a parsed :class:`ModelName` or a
validated digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locallama.errors import BadModelFile, ModelNotFound
from locallama.store import manifests as mf
from locallama.store.blobs import BlobStore, atomic_write_bytes, digest_bytes
from locallama.store.names import ModelName, parse_name


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


@dataclass(frozen=True)
class ModelEntry:
    """One line of ``list``."""

    name: ModelName
    digest: str
    size: int
    modified: datetime
    config: dict[str, Any] = field(default_factory=dict)  # family, type, file type

    @property
    def id(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


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
            existing.unlink()  # same name in other case: replace, don't duplicate
        atomic_write_bytes(self.manifest_path_exact(name), manifest.to_bytes())

    # -- queries --------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        entries = []
        for path in self._manifest_files():
            name = self._name_of(path)
            if name is None:
                continue
            try:
                data = path.read_bytes()
                manifest = mf.parse_manifest(data)
            except (OSError, BadModelFile):
                continue  # a broken manifest is skipped here and reported by `show`
            entries.append(
                ModelEntry(
                    name=name,
                    digest=digest_bytes(data),
                    size=manifest.size,
                    modified=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
                    config=self._blob_json(manifest.config.digest, {}) if self.blobs.has(
                        manifest.config.digest) else {},
                )
            )
        entries.sort(key=lambda e: e.modified, reverse=True)
        return entries

    def get(self, name: ModelName | str) -> ModelRecord:
        """Resolve a name to a runnable record, reading its small layers."""
        name = parse_name(name) if isinstance(name, str) else name
        manifest, data, path = self.read_manifest(name)
        model_layer = manifest.first(mf.MEDIA_MODEL)
        if model_layer is None:
            raise BadModelFile(f"{name.display} has no model layer")
        model_path = self.blobs.path(model_layer.digest)
        if not model_path.is_file():
            raise BadModelFile(f"{name.display}: model blob {model_layer.digest} is missing")
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
            projectors=[self.blobs.path(la.digest) for la in manifest.all(mf.MEDIA_PROJECTOR)],
        )

    # -- changes --------------------------------------------------------------

    def copy(self, source: ModelName | str, destination: ModelName | str) -> ModelName:
        src = parse_name(source) if isinstance(source, str) else source
        dst = parse_name(destination) if isinstance(destination, str) else destination
        manifest, _, _ = self.read_manifest(src)
        self.write_manifest(dst, manifest)
        return dst

    def delete(self, name: ModelName | str) -> None:
        """Remove a manifest, then every blob it used that no other manifest uses."""
        name = parse_name(name) if isinstance(name, str) else name
        manifest, _, path = self.read_manifest(name)
        path.unlink()
        self._prune_dirs(path.parent)
        still_used = self.referenced_digests()
        for digest in manifest.digests() - still_used:
            self.blobs.remove(digest)

    def referenced_digests(self) -> set[str]:
        used: set[str] = set()
        for path in self._manifest_files():
            try:
                used |= mf.parse_manifest(path.read_bytes()).digests()
            except (OSError, BadModelFile):
                continue
        return used

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
