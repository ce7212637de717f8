"""A pulled model file that llama.cpp cannot load is refused before its manifest."""

from __future__ import annotations

import pytest

from fakeregistry import leftovers, model_digest
from locallama.errors import PullError


def test_a_registry_model_llama_cpp_refuses_is_not_stored(runtime, registry, make_gguf):
    bad = make_gguf(extra_metadata={"tokenizer.ggml.model": "bogus"})
    registry.add_model("library/bogus:latest", bad)
    with pytest.raises(PullError, match="'bogus:latest' from the registry is not a usable "
                                        "model: llama.cpp cannot load this model file: .*"
                                        "unknown tokenizer"):
        runtime.pull("bogus")
    assert runtime.list() == []
    assert not runtime.store.blobs.has(model_digest(registry, bad))


def test_a_url_model_llama_cpp_refuses_leaves_nothing(runtime, registry, make_gguf):
    bad = make_gguf(extra_metadata={"llama.feed_forward_length": 7})
    url = registry.add_file("wrong-shape.gguf", bad.read_bytes())
    with pytest.raises(PullError, match="has wrong shape"):
        runtime.pull(url)
    assert runtime.list() == [] and leftovers(runtime) == []
