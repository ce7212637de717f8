"""Refuse GGUF metadata that llama.cpp would abort on, before anything loads.

llama.cpp trusts a file's hyperparameters: a block count of 0 or 1000 against two
blocks of tensors, a KV head count that does not divide the head count, a NaN
RMS-norm epsilon or a vocabulary that repeats a token each end in ``abort()`` (or a
MemoryError in our own estimate) rather than an error.  These checks are cheap and
run on every header :func:`locallama.gguf_info.read_gguf_info` reads, so create,
import, pull and load all refuse such a file with one line naming the key and value.

Checks are keyed by the ``{arch}.`` prefix and skip what an architecture does not
have; per-layer arrays (a head count per layer) are checked element by element.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import gguf

MAX_BLOCKS = 10_000  # the largest real models have ~100-200 blocks
MIN_ALIGNMENT = 8  # llama.cpp's gguf.cpp asks only for a power of two; 1 aborts later
_BLOCK = re.compile(r"blk\.(\d+)\.")
_K, _A, _T = gguf.Keys.LLM, gguf.Keys.Attention, gguf.Keys.Tokenizer
_ROPE_SCALING = tuple(t.value for t in gguf.RopeScalingType)


class HeaderProblem(Exception):
    """Metadata a model cannot be loaded with; the message is one line naming the key."""


def block_indices(tensor_names: Iterable[str]) -> set[int]:
    """The N of every ``blk.N.`` tensor (the repeating layers llama.cpp counts)."""
    return {int(m.group(1)) for name in tensor_names if (m := _BLOCK.match(name))}


def check_alignment(value: Any) -> int:
    """``general.alignment`` (a power of two, at least 8) as an int; HeaderProblem otherwise.

    The GGUF spec (ggml docs/gguf.md) and llama.cpp's gguf.cpp require a power of
    two; tensor data aligned to less than 8 bytes makes ggml abort, so it is refused.
    """
    if type(value) is not int or value < MIN_ALIGNMENT or value & (value - 1):
        raise HeaderProblem(f"general.alignment is {value!r}, not a power of two "
                            f">= {MIN_ALIGNMENT}")
    return value


def check_metadata(fields: Mapping[str, Any], arch: str, blocks: set[int]) -> None:
    """Raise HeaderProblem for the first value llama.cpp could not load safely.

    ``fields`` maps each metadata key to its scalar, string or array (an object with
    ``count`` and ``values``; ``tokenizer.ggml.tokens`` values are the raw bytes of
    each token); ``blocks`` is :func:`block_indices` of the file's tensors.
    """
    _check_finite(fields)

    def key(template: str) -> str:
        return template.format(arch=arch)

    for template in (_K.BLOCK_COUNT, _K.EMBEDDING_LENGTH, _K.FEED_FORWARD_LENGTH,
                     _A.HEAD_COUNT, _K.CONTEXT_LENGTH, _K.VOCAB_SIZE):
        _check_positive(key(template), fields.get(key(template)))
    for template in (_A.LAYERNORM_RMS_EPS, _A.LAYERNORM_EPS):
        _check_epsilon(key(template), fields.get(key(template)))
    _check_blocks(key(_K.BLOCK_COUNT), fields.get(key(_K.BLOCK_COUNT)), blocks)
    _check_kv_heads(fields, key(_A.HEAD_COUNT), key(_A.HEAD_COUNT_KV))
    _check_experts(fields, key(_K.EXPERT_COUNT), key(_K.EXPERT_USED_COUNT))
    scaling = fields.get(key(gguf.Keys.Rope.SCALING_TYPE))
    if scaling is not None and scaling not in _ROPE_SCALING:  # llama.cpp asserts on it
        raise HeaderProblem(f"{key(gguf.Keys.Rope.SCALING_TYPE)} is {_show(scaling)}, not one "
                            f"of {', '.join(_ROPE_SCALING)}")
    _check_vocabulary(fields)


def _numbers(value: Any) -> tuple[Any, ...] | None:
    """A scalar or a decoded array as a tuple; None for strings and skipped arrays."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value,)
    values = getattr(value, "values", None)
    if isinstance(values, tuple) and all(isinstance(v, (int, float)) for v in values):
        return values
    return None


def _check_finite(fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        for v in _numbers(value) or ():
            if isinstance(v, float) and not math.isfinite(v):
                raise HeaderProblem(f"{name} is {v}, not a finite number")


def _check_positive(name: str, value: Any) -> None:
    """A count llama.cpp divides by or allocates with: an int > 0 (per layer: max > 0)."""
    if value is None:
        return
    numbers = _numbers(value)
    if not numbers or any(type(v) is not int or v < 0 for v in numbers):
        raise HeaderProblem(f"{name} is {_show(value)}, not a positive integer")
    if max(numbers) == 0:
        raise HeaderProblem(f"{name} is 0, but it must be at least 1")


def _check_epsilon(name: str, value: Any) -> None:
    """A norm epsilon: ggml asserts ``eps >= 0`` on the first decode (not at load)."""
    numbers = _numbers(value)
    if numbers and any(v < 0 for v in numbers):
        raise HeaderProblem(f"{name} is {_show(value)}, but it must not be negative")


def _check_blocks(name: str, value: Any, blocks: set[int]) -> None:
    if type(value) is not int:
        return
    if value > MAX_BLOCKS:
        raise HeaderProblem(f"{name} is {value}, more than any model has ({MAX_BLOCKS} at most)")
    if blocks and (len(blocks) != value or max(blocks) >= value):
        raise HeaderProblem(f"{name} is {value} but the file has tensors for {len(blocks)} "
                            f"blocks (blk.{min(blocks)} to blk.{max(blocks)})")


def _check_kv_heads(fields: Mapping[str, Any], heads_key: str, kv_key: str) -> None:
    heads, kv = _numbers(fields.get(heads_key)), _numbers(fields.get(kv_key))
    if not heads or not kv:
        return
    if any(type(v) is not int or v < 0 for v in kv):
        raise HeaderProblem(f"{kv_key} is {_show(fields[kv_key])}, not a head count")
    n = max(len(heads), len(kv))
    if len(heads) not in (1, n) or len(kv) not in (1, n):
        raise HeaderProblem(f"{kv_key} has {len(kv)} values but {heads_key} has {len(heads)}")
    for layer in range(n):
        h, k = heads[layer % len(heads)], kv[layer % len(kv)]
        if k and h % k:  # 0 KV heads: a layer without attention (recurrent archs)
            where = f" (layer {layer})" if n > 1 else ""
            raise HeaderProblem(f"{kv_key} is {k}{where}, which does not divide "
                                f"{heads_key} {h}")


def _check_experts(fields: Mapping[str, Any], count_key: str, used_key: str) -> None:
    """llama.cpp asserts 0 < experts used <= experts (none used without experts)."""
    used = _numbers(fields.get(used_key)) or (0,)
    count = _numbers(fields.get(count_key)) or (0,)
    if count[0] and not max(used) or max(used) > count[0]:
        raise HeaderProblem(f"{used_key} is {max(used)} but {count_key} is {count[0]}: a "
                            "model uses between 1 and all of its experts")


def _check_vocabulary(fields: Mapping[str, Any]) -> None:
    """llama-vocab.cpp asserts every token string is unique; scores etc. index by token."""
    tokens = fields.get(_T.LIST)
    count = getattr(tokens, "count", None)
    if count is None:
        return
    if count == 0:
        raise HeaderProblem(f"{_T.LIST} is empty: the model has no vocabulary")
    for name in (_T.SCORES, _T.TOKEN_TYPE):
        other = getattr(fields.get(name), "count", None)
        if other is not None and other < count:
            raise HeaderProblem(f"{name} has {other} entries but {_T.LIST} has {count}")
    values = tokens.values
    if values is None:
        return
    if len(set(values)) == len(values):
        return
    # llama.cpp renames an empty token "[EMPTY_<id>]", so only non-empty ones can clash
    seen: dict[bytes, int] = {}
    for i, token in enumerate(values):
        if token and token in seen:
            text = token.decode("utf-8", errors="replace")
            shown = repr(text if len(text) <= 40 else text[:39] + "…")
            raise HeaderProblem(f"{_T.LIST} repeats the token {shown} (ids {seen[token]} "
                                f"and {i})")
        seen[token] = i


def _show(value: Any) -> str:
    values = getattr(value, "values", None)
    if values is not None:
        return repr(list(values[:8])) + ("…" if len(values) > 8 else "")
    return repr(value)
