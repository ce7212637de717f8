"""``import`` refuses a model file llama.cpp cannot load, the store as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from importhelpers import adopt_all, gguf_at
from locallama.engine.load_check import check_loads
from locallama.errors import InvalidModelFile
from locallama.store import Store, discover, parse_name
from locallama.store.create import create_model
from locallama.store.modelfile import parse_modelfile


def _check(path: Path, digest: str | None) -> None:
    check_loads(path, 60.0, digest)


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def test_a_gguf_llama_cpp_refuses_is_not_adopted(store: Store, tmp_path: Path) -> None:
    bad = gguf_at(tmp_path / "files" / "bad.gguf",
                  extra_metadata={"tokenizer.ggml.model": "bogus"})
    before = _files(store.root)
    with pytest.raises(InvalidModelFile, match="unknown tokenizer: 'bogus'"):
        adopt_all(store, discover.scan(store, bad), check=_check)
    assert _files(store.root) == before and store.list() == []
    assert bad.stat().st_nlink == 1  # the link the import made is gone


def test_an_ollama_model_llama_cpp_refuses_is_not_adopted(store: Store, tmp_path: Path) -> None:
    bad = gguf_at(tmp_path / "files" / "bad.gguf",
                  extra_metadata={"llama.feed_forward_length": 7})
    source = Store(tmp_path / "ollama")
    create_model(source, parse_name("bad"), parse_modelfile(f"FROM {bad}\n"), tmp_path)
    before = _files(store.root)
    with pytest.raises(InvalidModelFile, match="has wrong shape"):
        adopt_all(store, discover.scan(store, source.root), check=_check)
    assert _files(store.root) == before and store.list() == []


def test_a_good_gguf_is_adopted_with_the_check(store: Store, tiny_gguf: Path) -> None:
    [result] = adopt_all(store, discover.scan(store, tiny_gguf), check=_check)
    assert result.status == "imported"
    assert [m.name.display for m in store.list()] == ["tiny:latest"]
