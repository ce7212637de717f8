"""Manifests in Ollama's format: OCI-style JSON naming a config and layer blobs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from locallama.errors import BadModelFile, InvalidRequest
from locallama.store.blobs import normalize_digest

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_LICENSE = "application/vnd.ollama.image.license"


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    config: Layer
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def to_bytes(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        return json.dumps(doc, indent=None, separators=(",", ":")).encode()

    @property
    def size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)

    def first(self, media_type: str) -> Layer | None:
        return next((la for la in self.layers if la.media_type == media_type), None)

    def all(self, media_type: str) -> list[Layer]:
        return [la for la in self.layers if la.media_type == media_type]

    def digests(self) -> set[str]:
        return {self.config.digest, *(la.digest for la in self.layers)}


def parse_manifest(data: bytes, where: str = "manifest") -> Manifest:
    """Parse and validate manifest JSON; digests must be well formed (they become paths)."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            raise ValueError("schemaVersion is not 2")
        config = _layer(doc["config"])
        layers = tuple(_layer(item) for item in doc.get("layers") or [])
    except (ValueError, KeyError, TypeError, InvalidRequest) as exc:
        raise BadModelFile(f"{where} is not a valid manifest: {exc}") from None
    return Manifest(config=config, layers=layers)


def _layer(item: Any) -> Layer:
    if not isinstance(item, dict):
        raise ValueError("a layer is not an object")
    size = item.get("size", 0)
    if not isinstance(size, int) or size < 0:
        raise ValueError("a layer has a bad size")
    return Layer(
        media_type=str(item.get("mediaType", "")),
        digest=normalize_digest(str(item.get("digest", ""))),
        size=size,
    )
