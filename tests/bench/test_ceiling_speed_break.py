"""bench/concurrency.py's engine ceiling measures the engine as `locallama serve` would
run the model: the same flash attention, repacking and KV cache type, the quantized
cache included (which turns flash attention on for weights that keep it off)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from locallama.engine.model import LoadedModel
from locallama.runtime.types import GenerateRequest
from runtimes import local_runtime
from tinymodel import Q8_0, write_tiny_gguf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import concurrency  # noqa: E402

# the tiny model with 32-wide heads (2 heads, 1 KV head): a q8_0 KV cache fits it
WIDE_HEADS = {"llama.attention.head_count": 2, "llama.attention.head_count_kv": 1,
              "llama.rope.dimension_count": 32}


@pytest.mark.parametrize("env", [{"LOCALLAMA_KV_CACHE_TYPE": "q8_0"}, {},
                                 {"LOCALLAMA_REPACK": "1"}])
def test_the_ceiling_loads_the_model_as_serve_does(tmp_path: Path, monkeypatch, env):
    for key in ("LOCALLAMA_FLASH_ATTENTION", "LOCALLAMA_REPACK", "LOCALLAMA_KV_CACHE_TYPE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    gguf = write_tiny_gguf(tmp_path / "q8.gguf", file_type=Q8_0, extra_metadata=WIDE_HEADS)
    settings = concurrency.Settings.from_env()
    runtime = local_runtime(tmp_path, ("q8", gguf), kv_cache_type=settings.kv_cache_type,
                            repack=settings.repack)
    try:
        list(runtime.generate(GenerateRequest(model="q8", prompt="hi",
                                              options={"num_predict": 1})))
        [served] = runtime.ps()
    finally:
        runtime.close()

    seen: dict[str, object] = {}
    new_context, init = LoadedModel.new_context, LoadedModel.__init__

    def record_init(self, path, info, params, *args, **kwargs):
        seen["repack"] = params.repack
        init(self, path, info, params, *args, **kwargs)

    def record_context(self, *args, **kwargs):
        seen["flash_attention"] = kwargs.get("flash_attention", False)
        seen["kv_cache_type"] = kwargs.get("kv_cache_type", "f16")
        return new_context(self, *args, **kwargs)

    monkeypatch.setattr(LoadedModel, "__init__", record_init)
    monkeypatch.setattr(LoadedModel, "new_context", record_context)
    assert concurrency.engine_ceiling(str(gguf), threads=1, streams=2, steps=2) > 0
    assert seen == {"repack": served.repack, "flash_attention": served.flash_attention,
                    "kv_cache_type": served.kv_cache_type}
