"""Helpers for the import tests (discovery and adopting): models as other tools keep
them, made from the tiny test model."""

from __future__ import annotations

from pathlib import Path

from locallama.store import Store, importer, parse_name
from locallama.store.create import create_model
from locallama.store.discover import Candidate
from locallama.store.importer import Adopted
from locallama.store.modelfile import parse_modelfile
from tinymodel import write_tiny_gguf


def ollama_store(root: Path, tiny_gguf: Path) -> Store:
    """An Ollama-layout folder with two models that share their weights."""
    source = Store(root)
    create_model(source, parse_name("tiny"), parse_modelfile(f"FROM {tiny_gguf}\n"), root)
    create_model(source, parse_name("me/helper:v1"), parse_modelfile(
        "FROM tiny\nSYSTEM Answer briefly.\nPARAMETER temperature 0.2\n"), root)
    return source


def gguf_at(path: Path, **kwargs: object) -> Path:
    """A tiny model at ``path``, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiny_gguf(path, **kwargs)


def adopt_all(store: Store, candidates: list[Candidate], **kwargs: object) -> list[Adopted]:
    return [importer.adopt(store, c, **kwargs) for c in candidates]
