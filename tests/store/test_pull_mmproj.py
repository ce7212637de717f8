"""``pull hf.co/…`` fetches the repository's vision projector (its mmproj file) beside the
chosen quantization, and the pulled model sees."""

from __future__ import annotations

import base64
from pathlib import Path

from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from locallama.store import manifests as mf
from locallama.store.huggingface import GGUFFile, choose_projector
from tinyvision import png_bytes, write_tiny_projector


def test_the_projector_of_the_models_quantization_comes_along(tmp_path: Path, registry,
                                                              tiny_gguf: Path) -> None:
    f16 = write_tiny_projector(tmp_path / "f16.gguf", seed=1).read_bytes()
    q8 = write_tiny_projector(tmp_path / "q8.gguf", seed=2).read_bytes()
    registry.add_hf_repo("someone/Seer-GGUF", {"seer.Q8_0.gguf": tiny_gguf.read_bytes(),
                                               "mmproj-seer-F16.gguf": f16,
                                               "mmproj-seer-Q8_0.gguf": q8})
    runtime = LocalRuntime(Settings(models_dir=tmp_path / "store", history_file=tmp_path / "h",
                                    registry=registry.url, hf_endpoint=registry.url))
    try:
        events = []
        runtime.pull("hf.co/someone/Seer-GGUF:Q8_0", progress=events.append)
        record = runtime.store.get("hf.co/someone/Seer-GGUF:Q8_0")
        layers = record.manifest.all(mf.MEDIA_PROJECTOR)
        assert len(layers) == 1 and record.projectors[0].read_bytes() == q8
        assert any("mmproj-seer-Q8_0.gguf" in e.status for e in events)
        assert "vision" in runtime.show("hf.co/someone/Seer-GGUF:Q8_0").capabilities
        image = base64.b64encode(png_bytes(1)).decode()
        chunks = list(runtime.generate(GenerateRequest(
            "hf.co/someone/Seer-GGUF:Q8_0", "what is it", images=[image],
            options={"num_predict": 4})))
        assert chunks[-1].done and chunks[-1].prompt_tokens > 16
    finally:
        runtime.close()


def test_a_repository_without_a_projector_pulls_the_model_alone(tmp_path: Path, registry,
                                                               tiny_gguf: Path) -> None:
    registry.add_hf_repo("someone/Plain-GGUF", {"plain.Q8_0.gguf": tiny_gguf.read_bytes(),
                                                "mmproj-plain-F16.gguf": tiny_gguf.read_bytes()})
    runtime = LocalRuntime(Settings(models_dir=tmp_path / "store", history_file=tmp_path / "h",
                                    registry=registry.url, hf_endpoint=registry.url))
    try:
        events = []
        runtime.pull("hf.co/someone/Plain-GGUF:Q8_0", progress=events.append)
        assert runtime.store.get("hf.co/someone/Plain-GGUF:Q8_0").projectors == []
        assert any("is not a vision projector" in e.status for e in events)
    finally:
        runtime.close()


def test_choose_projector_prefers_the_models_quantization_then_f16() -> None:
    def f(name: str) -> GGUFFile:
        return GGUFFile(name, 1, "a" * 64)

    model = f("m.Q4_K_M.gguf")
    files = [model, f("mmproj-m-F32.gguf"), f("mmproj-m-f16.gguf"), f("sub/mmproj-F16.gguf")]
    assert choose_projector(files, model).name == "mmproj-m-f16.gguf"
    assert choose_projector([*files, f("mmproj-Q4_K_M.gguf")], model).name == "mmproj-Q4_K_M.gguf"
    assert choose_projector([model], model) is None
