"""show's capabilities and ps's rows as a user sees them (issue 15's faults: a model
used for embeddings too was listed twice by ps)."""

from __future__ import annotations

from locallama.runtime.types import GenerateRequest
from runtimes import add_model


def test_a_model_used_to_generate_and_to_embed_is_one_ps_row(runtime):
    list(runtime.generate(GenerateRequest("tiny", "hi", options={"num_predict": 2})))
    [alone] = runtime.ps()
    runtime.embed("tiny", ["hello"])
    [row] = runtime.ps()
    assert row.name == "tiny:latest"
    assert row.context_length == alone.context_length  # the generating context's
    assert row.size > alone.size  # both contexts' memory
    runtime.unload("tiny")
    assert runtime.ps() == []


def test_an_embedding_only_model_is_one_row_too(runtime):
    runtime.embed("tiny", ["hello"])
    assert [r.name for r in runtime.ps()] == ["tiny:latest"]


def test_a_pooling_model_is_an_embedding_model(runtime, make_gguf):
    add_model(runtime, "embedder", make_gguf("embedder", extra_metadata={
        "llama.pooling_type": 1}))
    assert runtime.show("embedder").capabilities == ["embedding"]
    assert runtime.embed("embedder", ["hello"]).embeddings


def test_a_generative_model_completes(runtime):
    assert runtime.show("tiny").capabilities[0] == "completion"
    assert "embedding" not in runtime.show("tiny").capabilities
