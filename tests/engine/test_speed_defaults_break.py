"""The per-model speed settings (flash attention, repacking) tried the ways their
first tests did not: every combination of the two environment switches on weights of
both kinds, a quantized KV cache asked for by a request (a reload, and back), and a
request whose KV cache the model cannot have."""

from __future__ import annotations

import itertools
from pathlib import Path

import llama_cpp._internals
import pytest

import tinymodel
from locallama.errors import InvalidRequest
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from runtimes import add_model, local_runtime
from tinymodel import F16, F32, Q4_0, Q8_0, write_tiny_gguf

# the tiny model with 32-wide heads (2 heads, 1 KV head): a q8_0 KV cache fits it
WIDE_HEADS = {"llama.attention.head_count": 2, "llama.attention.head_count_kv": 1,
              "llama.rope.dimension_count": 32}


def ask(runtime, model: str, **options) -> None:
    list(runtime.generate(GenerateRequest(model=model, prompt="hi",
                                          options={"num_predict": 1, **options})))


def loaded(runtime) -> dict[str, tuple[str | None, bool | None, bool | None]]:
    return {i.name.split(":")[0]: (i.kv_cache_type, i.flash_attention, i.repack)
            for i in runtime.ps()}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[tuple[str, Path]]:
    d = tmp_path_factory.mktemp("speed")
    return [("f32", write_tiny_gguf(d / "f32.gguf", file_type=F32)),
            ("f16", write_tiny_gguf(d / "f16.gguf", file_type=F16)),
            ("q8", write_tiny_gguf(d / "q8.gguf", file_type=Q8_0, extra_metadata=WIDE_HEADS))]


@pytest.mark.parametrize("fa,rp", list(itertools.product(["", "0", "1"], repeat=2)))
def test_each_switch_wins_where_set_and_the_weights_decide_where_not(tmp_path, models,
                                                                     fa, rp):
    env = {k: v for k, v in (("LOCALLAMA_FLASH_ATTENTION", fa), ("LOCALLAMA_REPACK", rp))
           if v}
    settings = Settings.from_env(env)
    runtime = local_runtime(tmp_path, *models, flash_attention=settings.flash_attention,
                            repack=settings.repack, runner="inprocess")
    try:
        for name, _ in models:
            ask(runtime, name)
        got = loaded(runtime)
    finally:
        runtime.close()
    for name, exact in (("f32", True), ("f16", False), ("q8", True)):
        flash = {"": not exact, "0": False, "1": True}[fa]
        repack = {"": not exact, "0": False, "1": True}[rp]
        assert got[name] == ("f16", flash, repack), name


def test_a_requests_quantized_cache_turns_flash_attention_on_and_back_off(tmp_path, models):
    runtime = local_runtime(tmp_path, *models)
    try:
        ask(runtime, "q8")
        assert loaded(runtime) == {"q8": ("f16", False, False)}
        ask(runtime, "q8", kv_cache_type="q8_0")  # a reload
        assert loaded(runtime) == {"q8": ("q8_0", True, False)}
        ask(runtime, "q8")  # and back
        assert loaded(runtime) == {"q8": ("f16", False, False)}
    finally:
        runtime.close()


def test_a_cache_the_model_cannot_have_is_refused_without_unloading_it(tmp_path, models):
    """The tiny F32 model's heads are 16 wide: a q4_0 cache is refused (400).  The
    refusal used to come after the loaded model had been unloaded to make way for
    the reload, so one bad request cost every later one a load."""
    runtime = local_runtime(tmp_path, *models)
    try:
        ask(runtime, "f32")
        [before] = runtime.ps()
        with pytest.raises(InvalidRequest, match="head dimension"):
            ask(runtime, "f32", kv_cache_type="q4_0")
        [after] = runtime.ps()
        assert (after.name, after.pid) == (before.name, before.pid)
    finally:
        runtime.close()


@pytest.mark.parametrize("repack", [None, False, True])
def test_an_embedding_model_is_loaded_with_the_repacking_ps_shows(tmp_path, monkeypatch,
                                                                   repack):
    """Embedding models load through llama_cpp.Llama, which leaves llama.cpp's default,
    repacking on (it repacked the tiny Q4_0 model's matrices into q4_0_8x8), while ps
    said repack false and LOCALLAMA_REPACK=0 changed nothing."""
    asked: list[bool] = []
    init = llama_cpp._internals.LlamaModel.__init__

    def record(self, *args, params, **kwargs):
        asked.append(bool(params.use_extra_bufts))
        init(self, *args, params=params, **kwargs)

    monkeypatch.setattr(llama_cpp._internals.LlamaModel, "__init__", record)
    gguf = write_tiny_gguf(tmp_path / "q4.gguf", file_type=Q4_0)
    runtime = local_runtime(tmp_path, ("q4", gguf), repack=repack, runner="inprocess")
    try:
        assert len(runtime.embed("q4", ["the cat sat"]).embeddings) == 1
        [model] = runtime.ps()
    finally:
        runtime.close()
    assert asked == [bool(repack)]  # unset: embedding models keep it off
    assert (model.flash_attention, model.repack) == (False, bool(repack))


def test_a_q4_0_file_with_a_q6_k_output_matrix_loads_as_a_k_quant(tmp_path, monkeypatch):
    """`create --quantize q4_0` of a model whose rows are 256 wide keeps llama.cpp's
    Q6_K output matrix: the file counts as the K-quant it partly is (both settings
    on), though its quantization is called Q4_0 (README, *Determinism and its price*)."""
    monkeypatch.setattr(tinymodel, "N_EMBD", 256)
    monkeypatch.setattr(tinymodel, "HEAD_DIM", 64)
    wide = write_tiny_gguf(tmp_path / "wide.gguf",
                           extra_metadata={"llama.rope.dimension_count": 64})
    runtime = local_runtime(tmp_path)
    try:
        add_model(runtime, "q4", wide, quantize="q4_0")
        ask(runtime, "q4")
        [model] = runtime.ps()
    finally:
        runtime.close()
    assert model.details.quantization_level == "Q4_0"
    assert (model.flash_attention, model.repack) == (True, True)
