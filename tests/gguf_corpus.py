"""Corrupted variants of the tiny fixture GGUF, for the corpus tests.

Two families, both built in the test from :func:`tinymodel.write_tiny_gguf`:

- metadata variants (:data:`METADATA`): one hyperparameter or tokenizer key set to
  a zero, NaN, negative, absurdly large, inconsistent or garbage value, written by
  the gguf writer so the file is otherwise well formed;
- byte variants (:func:`byte_variants`): the good file's bytes edited in place:
  truncated at several offsets, header counts and versions changed, a tensor's
  data offset, shape, type id or name rewritten, tensor data made NaN or huge, a
  key's value type or name rewritten, and single bytes flipped at positions drawn
  with a fixed seed.

Positions come from ``gguf.GGUFReader`` on the good file, so an edit lands on the
field it names whatever the vocabulary's length.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from tinymodel import tiny_vocab

NAN = float("nan")
HUGE_U32 = 2**32 - 1
HUGE_I32 = 2**31 - 1


def _vocab_with(index: int, transform: Callable[[list], list]) -> dict[str, Any]:
    return {["tokenizer.ggml.tokens", "tokenizer.ggml.scores",
             "tokenizer.ggml.token_type"][index]: transform(tiny_vocab()[index])}


def _gpt2(merges: list[str] | None) -> dict[str, Any]:
    """A BPE ("gpt2") tokenizer over the tiny vocabulary, with ``merges`` (None: none)."""
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": merges}


#: kind -> write_tiny_gguf keyword arguments; llama.cpp reads every key changed here
METADATA: dict[str, dict[str, Any]] = {}
for _key, _huge in (("embedding_length", HUGE_I32), ("feed_forward_length", HUGE_I32),
                    ("block_count", 64), ("attention.head_count", HUGE_I32),
                    ("attention.head_count_kv", 64), ("context_length", HUGE_U32),
                    ("vocab_size", HUGE_U32), ("rope.dimension_count", HUGE_U32)):
    METADATA[f"{_key} NaN"] = {"extra_metadata": {f"llama.{_key}": NAN}}
    METADATA[f"{_key} huge"] = {"extra_metadata": {f"llama.{_key}": _huge}}
METADATA |= {
    "head_count_kv 0": {"extra_metadata": {"llama.attention.head_count_kv": 0}},
    "head_count 3 (not dividing embedding)": {
        "extra_metadata": {"llama.attention.head_count": 3, "llama.attention.head_count_kv": 3}},
    "head_count_kv above head_count": {"extra_metadata": {"llama.attention.head_count_kv": 8}},
    "embedding_length 32 (against 64-wide tensors)": {
        "extra_metadata": {"llama.embedding_length": 32}},
    "feed_forward_length 64 (against 128)": {"extra_metadata": {"llama.feed_forward_length": 64}},
    "block_count as a string": {"extra_metadata": {"llama.block_count": "two"}},
    "block_count as a float": {"extra_metadata": {"llama.block_count": 2.0}},
    "rope.dimension_count 0": {"extra_metadata": {"llama.rope.dimension_count": 0}},
    "rope freq base NaN": {"extra_metadata": {"llama.rope.freq_base": NAN}},
    "rope freq base 0": {"extra_metadata": {"llama.rope.freq_base": 0.0}},
    "rope freq base negative": {"extra_metadata": {"llama.rope.freq_base": -10000.0}},
    "rope freq base huge": {"extra_metadata": {"llama.rope.freq_base": 3e38}},
    "rms epsilon 0": {"extra_metadata": {"llama.attention.layer_norm_rms_epsilon": 0.0}},
    "rms epsilon negative": {"extra_metadata": {"llama.attention.layer_norm_rms_epsilon": -1.0}},
    "rms epsilon huge": {"extra_metadata": {"llama.attention.layer_norm_rms_epsilon": 3e38}},
    "rms epsilon infinite": {"extra_metadata": {
        "llama.attention.layer_norm_rms_epsilon": float("inf")}},
    "context_length 1": {"extra_metadata": {"llama.context_length": 1}, "n_ctx_train": 1},
    "vocab_size 10 (against ~700 tokens)": {"extra_metadata": {"llama.vocab_size": 10}},
    "token list of one token": {"extra_metadata": {
        "tokenizer.ggml.tokens": ["<unk>"], "tokenizer.ggml.scores": [0.0],
        "tokenizer.ggml.token_type": [2]}},
    "token list longer than the embedding": {
        "extra_metadata": _vocab_with(0, lambda t: t + [f"extra{i}" for i in range(50)])
        | _vocab_with(1, lambda s: s + [-1000.0] * 50)
        | _vocab_with(2, lambda t: t + [1] * 50)},
    "token types garbage": {"extra_metadata": _vocab_with(2, lambda t: [99] * len(t))},
    "token types negative": {"extra_metadata": _vocab_with(2, lambda t: [-1] * len(t))},
    "token types all control": {"extra_metadata": _vocab_with(2, lambda t: [3] * len(t))},
    "scores NaN": {"extra_metadata": _vocab_with(1, lambda s: [NAN] * len(s))},
    "BPE without merges": {"extra_metadata": _gpt2(None)},
    "BPE merges garbage": {"extra_metadata": _gpt2(["zz qq", "\u2581 \u2581", "x", "a b c"])},
    "BPE merges of unknown tokens": {"extra_metadata": _gpt2(["\u0100 \u0101"] * 20)},
    "tokenizer model unknown": {"extra_metadata": {"tokenizer.ggml.model": "nonsense"}},
    "pre-tokenizer unknown (BPE)": {"extra_metadata": _gpt2(["t h"])
                                    | {"tokenizer.ggml.pre": "nonsense"}},
    "bos id out of range": {"extra_metadata": {"tokenizer.ggml.bos_token_id": 100_000}},
    "eos id out of range": {"extra_metadata": {"tokenizer.ggml.eos_token_id": HUGE_U32}},
    "unk id out of range": {"extra_metadata": {"tokenizer.ggml.unknown_token_id": 5000}},
    "bos id negative": {"extra_metadata": {"tokenizer.ggml.bos_token_id": -5}},
    "padding id out of range": {"extra_metadata": {"tokenizer.ggml.padding_token_id": 99_999}},
    "chat template garbage": {"chat_template": "{% for %}{{ ]]] }}"},
    "chat template non-Jinja bytes": {"chat_template": "\x00\x01\x02 {{ \ufffd"},
    "chat template huge": {"chat_template": "{{ messages }}" * 20_000},
    "architecture unknown": {"extra_metadata": {"general.architecture": "nonsense"}},
    "architecture missing": {"extra_metadata": {"general.architecture": None}},
    "alignment not a power of two": {"extra_metadata": {"general.alignment": 24}},
    "file type garbage": {"extra_metadata": {"general.file_type": 9999}},
    "expert count without expert tensors": {"extra_metadata": {
        "llama.expert_count": 4, "llama.expert_used_count": 2}},
    "experts used above experts": {"extra_metadata": {
        "llama.expert_count": 1, "llama.expert_used_count": 8}},
    "key_length against tensors": {"extra_metadata": {"llama.attention.key_length": 8}},
    "rope scaling type garbage": {"extra_metadata": {"llama.rope.scaling.type": "nonsense"}},
    "rope scaling factor 0": {"extra_metadata": {"llama.rope.scaling.type": "linear",
                                                 "llama.rope.scaling.factor": 0.0}},
    "add_bos_token as a string": {"extra_metadata": {"tokenizer.ggml.add_bos_token": "yes"}},
}


# -- byte edits ------------------------------------------------------------------------------


def _field_pos(reader: gguf.GGUFReader, offset: int, parts: list, index: int) -> int:
    """Where ``parts[index]`` of a field that starts at ``offset`` lies in the file."""
    return offset + sum(int(p.nbytes) for p in parts[:index])


def _tensor(reader: gguf.GGUFReader, name: str) -> Any:
    return next(t for t in reader.tensors if t.name == name)


def _patched(data: bytes, pos: int, new: bytes) -> bytes:
    return data[:pos] + new + data[pos + len(new):]


def byte_variants(good: Path, flips: int = 20, seed: int = 1234) -> dict[str, bytes]:
    """kind -> the bytes of ``good`` (a write_tiny_gguf file) with one corruption each."""
    data = good.read_bytes()
    reader = gguf.GGUFReader(good)
    data_start = int(reader.data_offset)
    out: dict[str, bytes] = {}

    for where, end in (("empty", 0), ("3 bytes", 3), ("magic only", 4), ("in the header", 20),
                       ("in the metadata", data_start // 3),
                       ("in the tensor infos", data_start - 200),
                       ("at the data start", data_start),
                       ("in the tensor data", (data_start + len(data)) // 2),
                       ("one byte short", len(data) - 1)):
        out[f"truncated {where}"] = data[:end]

    out["magic wrong"] = b"GGUX" + data[4:]
    for version in (1, 4, 3 << 24):
        out[f"version {version}"] = _patched(data, 4, struct.pack("<I", version))
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    out["tensor count huge"] = _patched(data, 8, struct.pack("<Q", 2**62))
    out["tensor count one short"] = _patched(data, 8, struct.pack("<Q", n_tensors - 1))
    out["tensor count one more"] = _patched(data, 8, struct.pack("<Q", n_tensors + 1))
    out["metadata count huge"] = _patched(data, 16, struct.pack("<Q", 2**40))
    out["metadata count one short"] = _patched(data, 16, struct.pack("<Q", n_kv - 1))

    field = reader.fields["llama.block_count"]
    out["value type unknown"] = _patched(
        data, _field_pos(reader, field.offset, field.parts, 2), struct.pack("<I", 99))
    field = reader.fields["tokenizer.ggml.eos_token_id"]
    key_pos = _field_pos(reader, field.offset, field.parts, 1)
    out["duplicate key"] = _patched(data, key_pos, b"tokenizer.ggml.bos_token_id")
    field = reader.fields["tokenizer.ggml.tokens"]
    out["token array item type unknown"] = _patched(
        data, _field_pos(reader, field.offset, field.parts, 3), struct.pack("<I", 77))
    out["token array count huge"] = _patched(
        data, _field_pos(reader, field.offset, field.parts, 4), struct.pack("<Q", 2**60))

    def tensor_part(name: str, index: int) -> int:
        t = _tensor(reader, name).field
        return _field_pos(reader, t.offset, t.parts, index)

    # parts of a tensor info: name length, name, n_dims, dims, type, data offset
    embd = "token_embd.weight"
    out["tensor data offset past the end"] = _patched(
        data, tensor_part(embd, 5), struct.pack("<Q", len(data)))
    out["tensor data offset unaligned"] = _patched(
        data, tensor_part("output_norm.weight", 5),
        struct.pack("<Q", int(_tensor(reader, "output_norm.weight").data_offset)
                    - data_start + 4))
    out["tensor data offset overlapping"] = _patched(
        data, tensor_part("output.weight", 5), struct.pack("<Q", 0))
    dims = tensor_part(embd, 3)
    n_embd, n_vocab = struct.unpack_from("<QQ", data, dims)
    out["tensor shape against metadata"] = _patched(
        data, dims, struct.pack("<QQ", n_embd // 2, n_vocab * 2))
    out["tensor shape transposed"] = _patched(data, dims, struct.pack("<QQ", n_vocab, n_embd))
    out["tensor dimension 0"] = _patched(data, dims, struct.pack("<QQ", 0, n_vocab))
    out["tensor dimension huge"] = _patched(data, dims, struct.pack("<QQ", 2**62, 2**62))
    out["tensor n_dims 7"] = _patched(data, tensor_part(embd, 2), struct.pack("<I", 7))
    for type_id, label in ((99, "unknown"), (int(gguf.GGMLQuantizationType.F16), "F16"),
                           (int(gguf.GGMLQuantizationType.Q8_0), "Q8_0"),
                           (int(gguf.GGMLQuantizationType.Q4_K), "Q4_K")):
        out[f"tensor type id {label}"] = _patched(
            data, tensor_part("blk.0.attn_q.weight", 4), struct.pack("<I", type_id))
    name_pos = tensor_part("blk.1.attn_q.weight", 1)
    out["duplicate tensor name"] = _patched(data, name_pos, b"blk.0.attn_q.weight")
    out["tensor renamed (one missing)"] = _patched(data, name_pos, b"blk.1.attn_x.weight")
    out["tensor of block 7"] = _patched(data, name_pos, b"blk.7.attn_q.weight")

    for label, value, tensor in (("NaN", np.nan, embd), ("infinite", np.inf, "output_norm.weight"),
                                 ("huge", 3e38, "output.weight")):
        t = _tensor(reader, tensor)
        fill = np.full(int(t.n_elements), value, dtype=np.float32).tobytes()
        out[f"{tensor} all {label}"] = _patched(data, int(t.data_offset), fill)

    rng = random.Random(seed)
    for i in range(flips):
        # mostly in the header (where a flip changes structure), one in four anywhere
        pos = rng.randrange(24, data_start) if i % 4 else rng.randrange(len(data))
        out[f"byte {pos} flipped"] = _patched(data, pos, bytes([data[pos] ^ rng.randrange(1, 256)]))
    return out
