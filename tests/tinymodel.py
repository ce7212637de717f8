"""Tiny random-weight GGUF models for tests: real llama.cpp loads them in milliseconds.

The model is a 2-layer llama (n_embd 64, 4 heads, 2 KV heads, ff 128) with a
SentencePiece-style vocabulary: <unk>, <s>, </s>, the ChatML control tokens, the
256 byte-fallback tokens and a few hundred English pieces, so ordinary text
tokenizes into sensible pieces and anything else falls back to bytes.  Its output
is noise; tests use it for plumbing, never for quality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np

F32 = gguf.LlamaFileType.ALL_F32
F16 = gguf.LlamaFileType.MOSTLY_F16
Q8_0 = gguf.LlamaFileType.MOSTLY_Q8_0
Q4_0 = gguf.LlamaFileType.MOSTLY_Q4_0

#: how 2-D weights are stored for each supported file type
_TENSOR_TYPE = {
    F32: gguf.GGMLQuantizationType.F32,
    F16: gguf.GGMLQuantizationType.F16,
    Q8_0: gguf.GGMLQuantizationType.Q8_0,
    Q4_0: gguf.GGMLQuantizationType.Q4_0,
}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
HEAD_DIM = N_EMBD // N_HEAD

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot word but what some we can out other were all there
when up use your how said an each she which do their time if will way about many
then them write would like so these her long make thing see him two has look more
day could go come did number sound no most people my over know water than call
first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under
name very through just form sentence great think say help low line differ turn
cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here
must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father hello
model test story once upon blue red sky sun cat dog quick brown fox jump lazy sat mat
The A I It This What How Why Once Hello There He She We You They In On My Yes No
"""
_SUFFIXES = ["s", "ed", "ing", "er", "ly", "es", "'s", "n't"]


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types, SentencePiece style (higher score merges first)."""
    tokens = list(SPECIAL_TOKENS)
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * (len(SPECIAL_TOKENS) - 1)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    scores = [0.0] * len(tokens)
    pieces: dict[str, None] = {}  # ordered set: most useful pieces first
    for word in _WORDS.split():
        for end in range(2, len(word) + 2):  # "▁t", "▁th", "▁the": every merge step exists
            pieces["\u2581" + word[: end - 1]] = None
    for suffix in _SUFFIXES:
        for end in range(2, len(suffix) + 1):
            pieces[suffix[:end]] = None
    chars = "\u2581abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\":;-()"
    for ch in chars:
        pieces.setdefault(ch, None)
    for rank, piece in enumerate(pieces):
        tokens.append(piece)
        scores.append(-1.0 - rank)  # merges prefer earlier (more common) pieces
        types.append(gguf.TokenType.NORMAL)
    return tokens, scores, [int(t) for t in types]


def _value_type(value: Any) -> gguf.GGUFValueType:
    """GGUF type for a Python value, choosing what llama.cpp expects for hyperparameters."""
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        if 0 <= value < 2**32:
            return gguf.GGUFValueType.UINT32
        return gguf.GGUFValueType.INT32 if -(2**31) <= value < 0 else gguf.GGUFValueType.INT64
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    if isinstance(value, str):
        return gguf.GGUFValueType.STRING
    if isinstance(value, (list, tuple)) and value:
        return gguf.GGUFValueType.ARRAY
    raise TypeError(f"cannot store {value!r} as GGUF metadata")


def _tensors(rng: np.random.Generator, n_vocab: int) -> dict[str, np.ndarray]:
    """The llama tensors, numpy shape (rows, cols); GGUF stores the dims reversed."""
    def weight(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    n_kv = N_HEAD_KV * HEAD_DIM
    out = {
        "token_embd.weight": weight(n_vocab, N_EMBD),
        "output_norm.weight": np.ones(N_EMBD, dtype=np.float32),
        "output.weight": weight(n_vocab, N_EMBD),
    }
    for i in range(N_LAYER):
        out |= {
            f"blk.{i}.attn_norm.weight": np.ones(N_EMBD, dtype=np.float32),
            f"blk.{i}.attn_q.weight": weight(N_EMBD, N_EMBD),
            f"blk.{i}.attn_k.weight": weight(n_kv, N_EMBD),
            f"blk.{i}.attn_v.weight": weight(n_kv, N_EMBD),
            f"blk.{i}.attn_output.weight": weight(N_EMBD, N_EMBD),
            f"blk.{i}.ffn_norm.weight": np.ones(N_EMBD, dtype=np.float32),
            f"blk.{i}.ffn_gate.weight": weight(N_FF, N_EMBD),
            f"blk.{i}.ffn_up.weight": weight(N_FF, N_EMBD),
            f"blk.{i}.ffn_down.weight": weight(N_EMBD, N_FF),
        }
    return out


def write_tiny_gguf(
    path: str | Path,
    *,
    chat_template: str | None = CHATML_TEMPLATE,
    seed: int = 0,
    n_ctx_train: int = 2048,
    architecture: str = "llama",
    file_type: gguf.LlamaFileType = F32,
    extra_metadata: Mapping[str, Any] | None = None,
    special_tokens: Sequence[str] = (),
) -> Path:
    """Write a tiny llama model to ``path`` and return it.

    ``special_tokens`` are added as control tokens at the end of the vocabulary (ids
    ``len(tiny_vocab()[0])`` on, in order); without them the vocabulary is the usual one.

    ``file_type`` is one of F32, F16, Q8_0, Q4_0 (2-D weights; norms stay F32).
    ``extra_metadata`` adds or replaces keys; a value of None removes the key, so a
    test can build a file without, say, ``general.architecture``.  An architecture
    other than "llama" only renames the hyperparameter keys (for validation tests).
    """
    path = Path(path)
    tokens, scores, types = _vocab()
    tokens += list(special_tokens)
    scores += [0.0] * len(special_tokens)
    types += [int(gguf.TokenType.CONTROL)] * len(special_tokens)
    arch = architecture
    metadata: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": "tiny-llama",
        "general.file_type": int(file_type),
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
        f"{arch}.vocab_size": len(tokens),
        f"{arch}.context_length": n_ctx_train,
        f"{arch}.embedding_length": N_EMBD,
        f"{arch}.block_count": N_LAYER,
        f"{arch}.feed_forward_length": N_FF,
        f"{arch}.rope.dimension_count": HEAD_DIM,
        f"{arch}.rope.freq_base": 10000.0,
        f"{arch}.attention.head_count": N_HEAD,
        f"{arch}.attention.head_count_kv": N_HEAD_KV,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.unknown_token_id": UNK_ID,
        "tokenizer.ggml.bos_token_id": BOS_ID,
        "tokenizer.ggml.eos_token_id": EOS_ID,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.ggml.add_space_prefix": True,
    }
    if chat_template is not None:
        metadata["tokenizer.chat_template"] = chat_template
    metadata.update(extra_metadata or {})

    writer = gguf.GGUFWriter(path, arch or "llama")
    writer.kv_data[0].clear()  # we write every key ourselves, general.architecture included
    if isinstance(metadata.get("general.alignment"), int):
        writer.data_alignment = metadata["general.alignment"]
    for key, value in metadata.items():
        if value is None:
            continue
        vtype = _value_type(value)
        sub = None
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType.INT32 if key.endswith("token_type") else _value_type(value[0])
        writer.add_key_value(key, list(value) if sub else value, vtype, sub_type=sub)

    qtype = _TENSOR_TYPE[gguf.LlamaFileType(file_type)]
    rng = np.random.default_rng(seed)
    for name, array in _tensors(rng, len(tokens)).items():
        if array.ndim < 2 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_parameter_count() -> int:
    """The number of weights write_tiny_gguf writes (any file type)."""
    n_vocab = len(_vocab()[0])
    per_layer = 2 * N_EMBD + 2 * N_EMBD * N_EMBD + 2 * N_HEAD_KV * HEAD_DIM * N_EMBD
    per_layer += 3 * N_FF * N_EMBD
    return 2 * n_vocab * N_EMBD + N_EMBD + N_LAYER * per_layer


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """The vocabulary write_tiny_gguf writes: (tokens, scores, token types), each a fresh
    list, so a test can corrupt a copy and pass it back through ``extra_metadata``."""
    return _vocab()


#: the fill-in-the-middle tokens write_fim_gguf adds (Qwen2.5-Coder's spellings), and the
#: repository-level ones it adds with ``repo_level`` (llama.cpp also finds these by text)
FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>")
REPO_TOKENS = ("<|repo_name|>", "<|file_sep|>")


def write_fim_gguf(path: str | Path, *, repo_level: bool = False, legacy_keys: bool = False,
                   **kwargs: Any) -> Path:
    """A tiny model whose vocabulary declares fill-in-the-middle tokens: FIM_TOKENS are
    added after the usual vocabulary (``fim_ids()`` gives their ids) and named by
    ``tokenizer.ggml.fim_{pre,suf,mid,pad}_token_id``; with ``repo_level`` REPO_TOKENS
    follow, named by ``fim_rep`` / ``fim_sep`` (the repository-level layout); with
    ``legacy_keys`` the three needed ones are named by the older
    ``prefix/suffix/middle_token_id`` keys instead.  Other keyword arguments go to
    write_tiny_gguf."""
    ids = fim_ids()
    keys = ["prefix", "suffix", "middle"] if legacy_keys else ["fim_pre", "fim_suf", "fim_mid"]
    meta = {f"tokenizer.ggml.{k}_token_id": ids[t] for k, t in zip(keys, FIM_TOKENS[:3],
                                                                   strict=True)}
    meta["tokenizer.ggml.fim_pad_token_id"] = ids["<|fim_pad|>"]
    if repo_level:
        meta["tokenizer.ggml.fim_rep_token_id"] = ids["<|repo_name|>"]
        meta["tokenizer.ggml.fim_sep_token_id"] = ids["<|file_sep|>"]
    meta.update(kwargs.pop("extra_metadata", None) or {})
    added = FIM_TOKENS + (REPO_TOKENS if repo_level else ())
    return write_tiny_gguf(path, special_tokens=added, extra_metadata=meta, **kwargs)


def fim_ids() -> dict[str, int]:
    """The id of each FIM_TOKENS and REPO_TOKENS token in a write_fim_gguf model."""
    base = len(_vocab()[0])
    return {token: base + i for i, token in enumerate(FIM_TOKENS + REPO_TOKENS)}


#: the tiny reranker's special tokens (BERT's), at ids 0..4 in this order
BERT_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _bert_vocab() -> list[str]:
    """A WordPiece vocabulary as llama.cpp stores it: specials, then "▁word" for a word
    start and the bare piece for a continuation (the converter's "##piece")."""
    tokens = list(BERT_SPECIAL)
    seen = set(tokens)
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\":;-()"
    for piece in [w for w in _WORDS.split()] + list(chars):
        for spelled in ("\u2581" + piece, piece):
            if spelled not in seen:
                seen.add(spelled)
                tokens.append(spelled)
    return tokens


def write_tiny_reranker_gguf(path: str | Path, *, seed: int = 0, pooling_type: int = 4,
                             rerank_template: str | None = None,
                             classifier: bool = True) -> Path:
    """Write a tiny random-weight BERT cross-encoder (llama.cpp's rank pooling) to ``path``.

    Two layers, n_embd 64, 4 heads, a WordPiece vocabulary of BERT's specials and the
    words of the llama model; ``bert.pooling_type`` is ``pooling_type`` (4 = rank), the
    classifier head is ``cls`` (dense + tanh) then ``cls.output`` (one label), left out
    when ``classifier`` is false.  ``rerank_template`` sets ``tokenizer.chat_template.rerank``
    (llama-server's "{query}"/"{document}" template).  Returns ``path``."""
    path = Path(path)
    tokens = _bert_vocab()
    types = [int(gguf.TokenType.CONTROL)] * len(BERT_SPECIAL)
    types += [int(gguf.TokenType.NORMAL)] * (len(tokens) - len(BERT_SPECIAL))
    types[1] = int(gguf.TokenType.UNKNOWN)
    arch, n_ctx = "bert", 512
    metadata: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": "tiny-reranker",
        "general.file_type": int(F32),
        f"{arch}.context_length": n_ctx,
        f"{arch}.embedding_length": N_EMBD,
        f"{arch}.block_count": N_LAYER,
        f"{arch}.feed_forward_length": N_FF,
        f"{arch}.attention.head_count": N_HEAD,
        f"{arch}.attention.layer_norm_epsilon": 1e-12,
        f"{arch}.attention.causal": False,
        "tokenizer.ggml.token_type_count": 2,
        f"{arch}.pooling_type": pooling_type,
        "tokenizer.ggml.model": "bert",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.unknown_token_id": 1,
        "tokenizer.ggml.cls_token_id": 2,
        "tokenizer.ggml.seperator_token_id": 3,
        "tokenizer.ggml.mask_token_id": 4,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 3,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": True,
    }
    if rerank_template is not None:
        metadata["tokenizer.chat_template.rerank"] = rerank_template
    writer = gguf.GGUFWriter(path, arch)
    writer.kv_data[0].clear()
    for key, value in metadata.items():
        vtype = _value_type(value)
        sub = None
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType.INT32 if key.endswith("token_type") else _value_type(value[0])
        writer.add_key_value(key, list(value) if sub else value, vtype, sub_type=sub)

    rng = np.random.default_rng(seed)

    def weight(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def bias(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    zeros = np.zeros(N_EMBD, dtype=np.float32)
    tensors = {
        "token_embd.weight": weight(len(tokens), N_EMBD),
        "token_types.weight": weight(2, N_EMBD),
        "position_embd.weight": weight(n_ctx, N_EMBD),
        "token_embd_norm.weight": ones, "token_embd_norm.bias": zeros,
    }
    for i in range(N_LAYER):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors[f"blk.{i}.{name}.weight"] = weight(N_EMBD, N_EMBD)
            tensors[f"blk.{i}.{name}.bias"] = bias(N_EMBD)
        tensors |= {
            f"blk.{i}.attn_output_norm.weight": ones, f"blk.{i}.attn_output_norm.bias": zeros,
            f"blk.{i}.ffn_up.weight": weight(N_FF, N_EMBD), f"blk.{i}.ffn_up.bias": bias(N_FF),
            f"blk.{i}.ffn_down.weight": weight(N_EMBD, N_FF),
            f"blk.{i}.ffn_down.bias": bias(N_EMBD),
            f"blk.{i}.layer_output_norm.weight": ones, f"blk.{i}.layer_output_norm.bias": zeros,
        }
    if classifier:
        tensors |= {"cls.weight": weight(N_EMBD, N_EMBD), "cls.bias": bias(N_EMBD),
                    "cls.output.weight": weight(1, N_EMBD), "cls.output.bias": bias(1)}
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
