"""A quantized KV cache (LOCALLAMA_KV_CACHE_TYPE, the kv_cache_type option): named as
Ollama and llama.cpp name it, loaded and generating, counted in the memory budget and
in `fit`, and refused cleanly where llama.cpp cannot build it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liveserver import serve
from locallama.engine.loader import ModelLoader
from locallama.errors import InvalidRequest, ModelTooLarge
from locallama.fit import report
from locallama.gguf_info import estimate_memory, read_gguf_info
from locallama.kvcache import KV_CACHE_TYPES
from locallama.options import parse_parameters, resolve_options
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from runtimes import add_model
from runtimes import local_runtime as new_runtime
from tinymodel import N_EMBD, write_tiny_gguf

GREEDY = {"temperature": 0, "num_predict": 8, "num_ctx": 256}


@pytest.fixture(scope="module")
def wide_heads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with 2 heads of 32 (1 KV head): a head a q8_0/q4_0 block divides."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("kv") / "wide.gguf", n_ctx_train=8192, extra_metadata={
            "llama.attention.head_count": 2, "llama.attention.head_count_kv": 1,
            "llama.rope.dimension_count": N_EMBD // 2})


@contextlib.contextmanager
def local_runtime(home: Path, *models, **settings) -> Iterator:
    runtime = new_runtime(home, *models, **settings)
    try:
        yield runtime
    finally:
        runtime.close()


def text(runtime, model: str, **options) -> str:
    return "".join(c.text for c in runtime.generate(GenerateRequest(
        model, "the cat sat on", raw=True, options={**GREEDY, **options})))


def test_the_setting_takes_ollamas_names_and_refuses_others():
    assert Settings.from_env({}).kv_cache_type == "f16"
    assert Settings.from_env({"LOCALLAMA_KV_CACHE_TYPE": " Q8_0 "}).kv_cache_type == "q8_0"
    assert Settings.from_env({"LOCALLAMA_KV_CACHE_TYPE": "q4_0"}).kv_cache_type == "q4_0"
    with pytest.raises(InvalidRequest) as refused:
        Settings.from_env({"LOCALLAMA_KV_CACHE_TYPE": "q5_1"})
    message = str(refused.value)
    assert "LOCALLAMA_KV_CACHE_TYPE" in message and "f16, q8_0, q4_0" in message
    assert "\n" not in message


def test_the_option_is_checked_like_every_option():
    assert resolve_options({"kv_cache_type": "Q4_0"}).kv_cache_type == "q4_0"
    assert resolve_options({}).kv_cache_type == ""  # the server's setting
    assert parse_parameters([("kv_cache_type", "q8_0")]) == {"kv_cache_type": "q8_0"}
    for bad in ("bf16", 8, True):
        with pytest.raises(InvalidRequest, match="kv_cache_type"):
            resolve_options({"kv_cache_type": bad})


def test_a_q8_0_cache_loads_with_flash_attention_and_generates(tmp_path, wide_heads):
    with local_runtime(tmp_path, ("wide", wide_heads), kv_cache_type="q8_0") as runtime:
        assert text(runtime, "wide")
        [entry] = runtime.loader.entries()
        assert entry.params.kv_cache_type == "q8_0"
        assert entry.params.flash_attention  # turned on for it: nothing said otherwise
        assert [i.kv_cache_type for i in runtime.ps()] == ["q8_0"]


def test_a_models_own_kv_cache_type_wins_over_the_setting(tmp_path, wide_heads):
    with local_runtime(tmp_path, ("wide", wide_heads)) as runtime:
        add_model(runtime, "wide-q4", wide_heads, "PARAMETER kv_cache_type q4_0")
        assert text(runtime, "wide-q4")
        assert [e.params.kv_cache_type for e in runtime.loader.entries()] == ["q4_0"]
        assert text(runtime, "wide")  # the same file: reloaded with the setting's f16
        assert [e.params.kv_cache_type for e in runtime.loader.entries()] == ["f16"]
        assert [i.kv_cache_type for i in runtime.ps()] == ["f16"]
        assert runtime.estimate("wide-q4", 4096) < runtime.estimate("wide", 4096)


def test_the_budget_counts_the_smaller_cache(wide_heads):
    info = read_gguf_info(wide_heads)
    f16 = estimate_memory(info, 8192, 4).kv_cache
    for name, kind in KV_CACHE_TYPES.items():
        kv = estimate_memory(info, 8192, 4, kind.bytes_per_element).kv_cache
        assert kv == int(f16 * kind.bytes_per_element / 2), name
    # memory that holds the q4_0 cache but not the f16 one: f16 refused, q4_0 loads
    q4 = estimate_memory(info, 8192, 1, KV_CACHE_TYPES["q4_0"].bytes_per_element).total
    assert estimate_memory(info, 8192, 1).total > q4
    loader = ModelLoader(memory=lambda: q4, num_parallel=1, runner="inprocess")
    try:
        with pytest.raises(ModelTooLarge), loader.use(wide_heads,
                                                       resolve_options({"num_ctx": 8192})):
            pass
        with loader.use(wide_heads, resolve_options({"num_ctx": 8192,
                                                     "kv_cache_type": "q4_0"})):
            pass
    finally:
        loader.close()


def test_fit_counts_the_cache_type(wide_heads):
    info = read_gguf_info(wide_heads)
    f16 = report("wide", info, num_ctx=8192, budget=10**9, bandwidth=1e10)
    q8 = report("wide", info, num_ctx=8192, budget=10**9, bandwidth=1e10,
                kv_cache_type="q8_0")
    assert q8.fit.estimate.kv_cache == int(f16.fit.estimate.kv_cache * 34 / 64)
    assert q8.to_dict()["kv_cache_type"] == "q8_0"
    assert q8.tokens_per_second > f16.tokens_per_second


def test_a_quantized_cache_with_flash_attention_off_is_a_clean_400(tmp_path, wide_heads):
    settings = {"kv_cache_type": "q8_0", "flash_attention": False}
    with local_runtime(tmp_path, ("wide", wide_heads), **settings) as runtime:
        with pytest.raises(InvalidRequest, match="needs flash attention"):
            text(runtime, "wide")
        assert runtime.ps() == []  # nothing was loaded
        assert text(runtime, "wide", kv_cache_type="f16")  # the runtime still serves
        with serve(runtime, tmp=tmp_path) as url:
            answer = httpx.post(f"{url}/api/generate", json={
                "model": "wide", "prompt": "hi", "stream": False, "options": GREEDY},
                timeout=60)
    assert answer.status_code == 400
    assert "flash attention" in answer.json()["error"]


def test_a_head_no_block_divides_is_refused_not_aborted(tmp_path, tiny_gguf):
    """The tiny model's heads are 16 wide: a 32-element block cannot hold one."""
    with local_runtime(tmp_path, ("tiny", tiny_gguf), kv_cache_type="q4_0") as runtime:
        with pytest.raises(InvalidRequest, match="head dimension divisible by 32"):
            text(runtime, "tiny")
        assert text(runtime, "tiny", kv_cache_type="f16")
