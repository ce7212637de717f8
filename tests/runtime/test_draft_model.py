"""A draft model named in the Modelfile (``PARAMETER draft_model NAME``): created,
loaded beside the model, used for speculative decoding, refused with another vocabulary."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from locallama.errors import InvalidRequest, ModelNotFound
from locallama.runtime.types import GenerateRequest
from runtimes import add_model, local_runtime
from tinymodel import tiny_vocab, write_tiny_gguf

Q8 = gguf.LlamaFileType.MOSTLY_Q8_0
PROMPT = "the cat sat on the mat. " * 12


def answer(runtime, model: str, **options):
    text, final = "", None
    for chunk in runtime.generate(GenerateRequest(model, PROMPT, raw=True, options={
            "temperature": 0, "num_predict": 80, **options})):
        text += chunk.text
        final = chunk
    return text, final


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "target.gguf", file_type=Q8)


def test_a_draft_model_drafts_and_the_answer_stays_the_models(tmp_path, target):
    same = write_tiny_gguf(tmp_path / "draft.gguf", file_type=Q8)  # the same predictions
    runtime = local_runtime(tmp_path / "home", ("small", same), ("plain", target),
                            ("big", target, "PARAMETER draft_model small\n"
                                            "PARAMETER draft_num_predict 4\n"),
                            runner="inprocess")
    try:
        assert "draft_model" in runtime.show("big").parameters
        plain, off = answer(runtime, "plain", draft_max=0)
        fast, on = answer(runtime, "big")
        assert fast == plain
        assert on.draft_n > 0 and on.draft_n_accepted > 0
        assert off.draft_n == 0
    finally:
        runtime.close()


def test_a_draft_model_with_another_vocabulary_is_refused_at_create(tmp_path, target):
    other = write_tiny_gguf(tmp_path / "other.gguf", special_tokens=["<extra>"])
    runtime = local_runtime(tmp_path / "home", ("other", other), runner="inprocess")
    try:
        with pytest.raises(InvalidRequest, match="vocabulary"):
            add_model(runtime, "big", target, "PARAMETER draft_model other\n")
        with pytest.raises(ModelNotFound):
            add_model(runtime, "big", target, "PARAMETER draft_model missing\n")
        assert [e.name.display for e in runtime.list()] == ["other:latest"]
    finally:
        runtime.close()


def test_a_draft_model_spelling_tokens_otherwise_is_refused_at_load(tmp_path, target):
    tokens, scores, types = tiny_vocab()
    tokens[300] = tokens[300] + "x"  # same size and tokenizer, one token spelled otherwise
    odd = write_tiny_gguf(tmp_path / "odd.gguf", extra_metadata={
        "tokenizer.ggml.tokens": tokens})
    runtime = local_runtime(tmp_path / "home", ("odd", odd),
                            ("big", target, "PARAMETER draft_model odd\n"), runner="inprocess")
    try:
        with pytest.raises(InvalidRequest, match="does not share the model's vocabulary"):
            answer(runtime, "big")
        text, _ = answer(runtime, "odd")  # the draft model itself still answers
        assert text
    finally:
        runtime.close()
