"""The determinism settings: LOCALLAMA_FLASH_ATTENTION (on, off, or unset: on only
where a quantized KV cache needs it) and LOCALLAMA_REPACK (llama.cpp's repacked
weight layouts), parsed strictly and reaching the loaded model."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

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


def test_repack_is_off_unless_asked_and_junk_is_refused():
    assert Settings.from_env({}).repack is False
    assert Settings.from_env({"LOCALLAMA_REPACK": "1"}).repack is True
    for key in ("LOCALLAMA_REPACK", "LOCALLAMA_FLASH_ATTENTION"):
        with pytest.raises(InvalidRequest, match=f"{key} must be 1 or 0"):
            Settings.from_env({key: "maybe"})


@pytest.mark.parametrize(("flash", "kv", "expected"), [
    (None, "f16", False),  # unset: off, so batching never changes an answer
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
