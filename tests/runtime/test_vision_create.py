"""create with a vision projector: a second FROM line, checked before anything is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from locallama.errors import InvalidModelFile, InvalidRequest
from locallama.store import manifests as mf
from locallama.store import parse_name
from runtimes import create
from tinyvision import write_tiny_projector


def store_state(runtime) -> tuple[set[str], list[str]]:
    return runtime.store.blobs.digests(), sorted(e.name.display for e in runtime.list())


def test_a_second_from_stores_the_projector_layer(runtime, tiny_gguf: Path,
                                                  tmp_path: Path) -> None:
    projector = write_tiny_projector(tmp_path / "mmproj.gguf")
    create(runtime, "seer", f"FROM {tiny_gguf}\nFROM {projector}\n", tmp_path)
    record = runtime.store.get(parse_name("seer"))
    layers = [la.media_type for la in record.manifest.layers]
    assert layers.count(mf.MEDIA_PROJECTOR) == 1
    assert record.projectors and record.projectors[0].is_file()
    shown = runtime.show("seer")
    assert shown.capabilities[:2] == ["completion", "vision"]
    assert shown.projector_info["clip.vision.image_size"] == 64
    # a model built FROM it keeps the projector; the order of the FROM lines is free
    create(runtime, "seer2", "FROM seer\nSYSTEM look closely\n", tmp_path)
    assert runtime.store.get(parse_name("seer2")).projectors == record.projectors
    create(runtime, "seer3", f"FROM {projector}\nFROM {tiny_gguf}\n", tmp_path)
    assert runtime.store.get(parse_name("seer3")).projectors == record.projectors


def test_a_corrupt_projector_is_refused_and_the_store_is_unchanged(
        runtime, tmp_path: Path, make_gguf) -> None:
    model = make_gguf(seed=7)  # a model file the store does not hold yet
    good = write_tiny_projector(tmp_path / "mmproj.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:3000])
    before = store_state(runtime)
    with pytest.raises(InvalidModelFile):
        create(runtime, "broken", f"FROM {model}\nFROM {cut}\n", tmp_path)
    assert store_state(runtime) == before


def test_a_projector_for_another_model_is_refused(runtime, tmp_path: Path, make_gguf) -> None:
    model = make_gguf(seed=8)
    wrong = write_tiny_projector(tmp_path / "wrong.gguf", projection_dim=32)
    before = store_state(runtime)
    with pytest.raises(InvalidModelFile, match="n_embd"):
        create(runtime, "mismatch", f"FROM {model}\nFROM {wrong}\n", tmp_path)
    assert store_state(runtime) == before


def test_a_second_from_that_is_no_projector_is_refused(runtime, tiny_gguf: Path,
                                                       tmp_path: Path, make_gguf) -> None:
    other = make_gguf(seed=9)
    with pytest.raises(InvalidModelFile, match="must be a vision projector"):
        create(runtime, "two", f"FROM {tiny_gguf}\nFROM {other}\n", tmp_path)
    with pytest.raises(InvalidRequest, match="no such file"):
        create(runtime, "none", f"FROM {tiny_gguf}\nFROM ./missing.gguf\n", tmp_path)
    projector = write_tiny_projector(tmp_path / "only.gguf")
    with pytest.raises(InvalidModelFile, match="vision projector, not a model"):
        create(runtime, "only", f"FROM {projector}\n", tmp_path)
