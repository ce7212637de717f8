"""locallama.gguf_check: metadata llama.cpp would abort on is refused before any load.

The corpus is the kinds a user found among 223 corrupted variants of a small GGUF
(each once made llama.cpp abort the whole process, or our estimate raise
MemoryError), written from the tiny fixture model with one key changed.  Every one
is refused by ``locallama create`` with one line naming the key and the value, and
leaves the store as it was; import and pull share the check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakeregistry import fake_registry
from gguf_corpus import METADATA
from locallama.errors import BadModelFile, InvalidModelFile, PullError
from locallama.gguf_info import estimate_memory, read_gguf_info
from locallama.store import Store, discover, importer
from runtimes import add_model, local_runtime
from tinymodel import N_HEAD, tiny_vocab, write_tiny_gguf


def _repeated_token() -> dict[str, Any]:
    tokens, _, _ = tiny_vocab()
    tokens[300] = tokens[299]
    return {"tokenizer.ggml.tokens": tokens}


def _short(key: str, index: int) -> dict[str, Any]:
    return {key: tiny_vocab()[index][:-1]}


#: kind -> (write_tiny_gguf keyword arguments, fragments the message must hold)
CORPUS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "repeated token": ({"extra_metadata": _repeated_token()},
                       ("tokenizer.ggml.tokens repeats the token", "ids 299 and 300")),
    "NaN epsilon": ({"extra_metadata": {"llama.attention.layer_norm_rms_epsilon":
                                        float("nan")}},
                    ("llama.attention.layer_norm_rms_epsilon is nan",)),
    "infinite rope base": ({"extra_metadata": {"llama.rope.freq_base": float("inf")}},
                           ("llama.rope.freq_base is inf",)),
    "block count 0": ({"extra_metadata": {"llama.block_count": 0}},
                      ("llama.block_count is 0",)),
    "block count 1000": ({"extra_metadata": {"llama.block_count": 1000}},
                         ("llama.block_count is 1000 but the file has tensors for 2 blocks",)),
    "block count 3": ({"extra_metadata": {"llama.block_count": 3}},
                      ("llama.block_count is 3 but the file has tensors for 2 blocks",)),
    "block count 1": ({"extra_metadata": {"llama.block_count": 1}},
                      ("llama.block_count is 1 but the file has tensors for 2 blocks",)),
    "block count 2^32-1": ({"extra_metadata": {"llama.block_count": 2**32 - 1}},
                           ("llama.block_count is 4294967295, more than any model has",)),
    "KV heads not dividing heads": ({"extra_metadata": {"llama.attention.head_count_kv": 3}},
                                    ("llama.attention.head_count_kv is 3",
                                     "does not divide llama.attention.head_count 4")),
    "head count 0": ({"extra_metadata": {"llama.attention.head_count": 0}},
                     ("llama.attention.head_count is 0",)),
    "embedding length 0": ({"extra_metadata": {"llama.embedding_length": 0}},
                           ("llama.embedding_length is 0",)),
    "feed-forward length 0": ({"extra_metadata": {"llama.feed_forward_length": 0}},
                              ("llama.feed_forward_length is 0",)),
    "context length 0": ({"extra_metadata": {"llama.context_length": 0}, "n_ctx_train": 0},
                         ("llama.context_length is 0",)),
    "vocab size 0": ({"extra_metadata": {"llama.vocab_size": 0}}, ("llama.vocab_size is 0",)),
    "negative count": ({"extra_metadata": {"llama.embedding_length": -64}},
                       ("llama.embedding_length is -64, not a positive integer",)),
    "alignment 1": ({"extra_metadata": {"general.alignment": 1}},
                    ("general.alignment is 1, not a power of two >= 8",)),
    "alignment 4": ({"extra_metadata": {"general.alignment": 4}}, ("general.alignment is 4",)),
    "scores shorter than tokens": ({"extra_metadata": _short("tokenizer.ggml.scores", 1)},
                                   ("tokenizer.ggml.scores has", "entries but")),
    "token types shorter than tokens": (
        {"extra_metadata": _short("tokenizer.ggml.token_type", 2)},
        ("tokenizer.ggml.token_type has",)),
    "per-layer KV heads not dividing": (
        {"extra_metadata": {"llama.attention.head_count_kv": [2, 3]}},
        ("llama.attention.head_count_kv is 3 (layer 1)",)),
    "another architecture's block count": (
        {"architecture": "qwen2", "extra_metadata": {"qwen2.block_count": 1000}},
        ("qwen2.block_count is 1000",)),
}


#: tests/gguf_corpus.py's metadata kinds that create refuses -> what the message says:
#: the header check's line, or (last eight) llama.cpp's reason from the trial load
CORPUS |= {kind: (METADATA[kind], fragments) for kind, fragments in {
    "embedding_length NaN": ("llama.embedding_length is nan, not a finite number",),
    "feed_forward_length NaN": ("llama.feed_forward_length is nan",),
    "block_count NaN": ("llama.block_count is nan",),
    "attention.head_count NaN": ("llama.attention.head_count is nan",),
    "attention.head_count_kv NaN": ("llama.attention.head_count_kv is nan",),
    "context_length NaN": ("llama.context_length is nan",),
    "vocab_size NaN": ("llama.vocab_size is nan",),
    "rope.dimension_count NaN": ("llama.rope.dimension_count is nan",),
    "rope freq base NaN": ("llama.rope.freq_base is nan",),
    "rms epsilon infinite": ("llama.attention.layer_norm_rms_epsilon is inf",),
    "rms epsilon negative": ("llama.attention.layer_norm_rms_epsilon is -1.0",
                             "must not be negative"),
    "scores NaN": ("tokenizer.ggml.scores is nan",),
    "block_count huge": ("llama.block_count is 64 but the file has tensors for 2 blocks",),
    "attention.head_count huge": ("does not divide llama.attention.head_count 2147483647",),
    "attention.head_count_kv huge": ("llama.attention.head_count_kv is 64, which does not",),
    "head_count_kv above head_count": ("llama.attention.head_count_kv is 8",),
    "block_count as a string": ("llama.block_count is 'two', not a positive integer",),
    "block_count as a float": ("llama.block_count is 2.0, not a positive integer",),
    "architecture unknown": ("unknown model architecture 'nonsense'",),
    "architecture missing": ("no general.architecture in the metadata",),
    "alignment not a power of two": ("general.alignment is 24",),
    "experts used above experts": ("llama.expert_used_count is 8 but llama.expert_count is 1",),
    "rope scaling type garbage": ("llama.rope.scaling.type is 'nonsense', not one of none",),
    "embedding_length huge": ("llama.cpp cannot load this model file", "n_rot"),
    "feed_forward_length huge": ("tensor 'blk.0.ffn_gate.weight' has wrong shape",),
    "head_count_kv 0": ("tensor 'blk.0.attn_k.weight' has wrong shape",),
    "token list of one token": ("tensor 'token_embd.weight' has wrong shape",),
    "BPE without merges": ("cannot find tokenizer merges",),
    "tokenizer model unknown": ("unknown tokenizer: 'nonsense'",),
    "bos id negative": ("tokenizer.ggml.bos_token_id has wrong type",),
    "expert count without expert tensors": ("tensor 'blk.0.ffn_gate_inp.weight' not found",),
}.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corrupt")
    return {kind: write_tiny_gguf(folder / f"{i}.gguf", **kwargs)
            for i, (kind, (kwargs, _)) in enumerate(CORPUS.items())}


def _one_line(message: str, fragments: tuple[str, ...]) -> None:
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("kind", CORPUS)
def test_create_refuses_each_kind_in_one_line_and_stores_nothing(
        kind: str, corpus: dict[str, Path], tmp_path: Path, tiny_gguf: Path) -> None:
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf))
    try:
        before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "models").rglob("*"))
        with pytest.raises(InvalidModelFile) as caught:
            add_model(runtime, "broken", corpus[kind])
        _one_line(str(caught.value), CORPUS[kind][1])
        assert [e.name.display for e in runtime.list()] == ["tiny:latest"]
        after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "models").rglob("*"))
        assert after == before
    finally:
        runtime.close()


def test_valid_variants_still_pass(make_gguf: Callable[..., Path]) -> None:
    """What real models do must stay accepted: per-layer head counts, a layer with no
    KV heads (recurrent layers), empty tokens (llama.cpp renames them), alignment 8."""
    tokens, _, _ = tiny_vocab()
    tokens[299] = tokens[300] = ""
    info = read_gguf_info(make_gguf(extra_metadata={
        "llama.attention.head_count": [N_HEAD, N_HEAD],
        "llama.attention.head_count_kv": [2, 0],
        "llama.feed_forward_length": [128, 128],
        "tokenizer.ggml.tokens": tokens,
        "general.alignment": 8,
    }))
    assert (info.block_count, info.head_count, info.head_count_kv) == (2, 4, 2)
    assert info.head_count_kv_per_layer == (2, 0)


def test_the_memory_estimate_never_raises_on_a_corrupt_block_count(tiny_gguf: Path,
                                                                  corpus: dict[str, Path]) -> None:
    """The header with block_count 2^32-1 is refused by name; and an info that still
    carries such a count (built by hand) is plain arithmetic, not a MemoryError."""
    with pytest.raises(BadModelFile, match="llama.block_count is 4294967295"):
        read_gguf_info(corpus["block count 2^32-1"])
    info = dataclasses.replace(read_gguf_info(tiny_gguf), block_count=2**32 - 1,
                               head_count_kv_per_layer=(2, 1))
    estimate = estimate_memory(info, num_ctx=2048)
    assert estimate.kv_cache == 2048 * 2 * (2**32 - 1) * 32 * 2


def test_import_refuses_the_same_files(corpus: dict[str, Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    [candidate] = discover.scan(store, corpus["block count 1000"])
    with pytest.raises(BadModelFile, match="llama.block_count is 1000"):
        importer.adopt(store, candidate)
    assert store.list() == []


def test_pull_refuses_the_same_files(corpus: dict[str, Path], tmp_path: Path) -> None:
    with fake_registry() as registry:
        registry.add_model("library/broken:latest", corpus["repeated token"])
        runtime = local_runtime(tmp_path, registry=registry.url)
        try:
            with pytest.raises(PullError) as caught:
                runtime.pull("broken")
            _one_line(str(caught.value), ("not a usable model",
                                          "tokenizer.ggml.tokens repeats the token"))
            assert runtime.list() == []
        finally:
            runtime.close()
