"""KV cache element types: their names, sizes, and the checks llama.cpp would abort on.

A quantized cache stores keys and values in ggml's q8_0 or q4_0 blocks of 32
elements (34 and 18 bytes a block) instead of f16 (2 bytes an element), as
``llama-server --cache-type-k/--cache-type-v`` and Ollama's OLLAMA_KV_CACHE_TYPE do.
The type applies to both keys and values.  Importable without llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from locallama.errors import InvalidRequest

if TYPE_CHECKING:
    from locallama.gguf_info import GGUFInfo


@dataclass(frozen=True)
class KvCacheType:
    """One cache element type: its ggml type id (``enum ggml_type``), bytes per element,
    elements per block (a head's dimension must be a multiple of it)."""

    name: str
    ggml_type: int
    bytes_per_element: float
    block: int

    @property
    def quantized(self) -> bool:
        return self.block > 1


#: Ollama's and llama.cpp's names; ggml.h's ids (GGML_TYPE_F16 1, Q4_0 2, Q8_0 8).
KV_CACHE_TYPES: dict[str, KvCacheType] = {
    "f16": KvCacheType("f16", 1, 2.0, 1),
    "q8_0": KvCacheType("q8_0", 8, 34 / 32, 32),
    "q4_0": KvCacheType("q4_0", 2, 18 / 32, 32),
}
DEFAULT_KV_CACHE_TYPE = "f16"


def kv_cache_type(name: str, source: str = "kv_cache_type") -> KvCacheType:
    """The type named ``name`` (case and spaces ignored; "" is f16).

    Raises InvalidRequest naming ``source`` (the setting or option it came from) and the
    allowed names for any other value.
    """
    key = name.strip().lower() or DEFAULT_KV_CACHE_TYPE
    if key not in KV_CACHE_TYPES:
        raise InvalidRequest(f"{source} must be one of {', '.join(KV_CACHE_TYPES)}, "
                             f"not {name!r}")
    return KV_CACHE_TYPES[key]


def check_kv_cache(info: GGUFInfo, kind: KvCacheType, flash_attention: bool) -> None:
    """Refuse, as InvalidRequest, a cache llama.cpp cannot build for this model.

    - A quantized V cache needs flash attention (llama.cpp: "quantized V cache requires
      flash_attn to be enabled"; the context is then not created).
    - A quantized cache needs every head's key and value length to be a multiple of the
      block (32): llama.cpp refuses it with flash attention, and without it ggml would
      abort the process on the first matrix product.
    """
    if not kind.quantized:
        return
    if not flash_attention:
        raise InvalidRequest(
            f"a {kind.name} KV cache needs flash attention, which is turned off "
            "(LOCALLAMA_FLASH_ATTENTION=0); turn it on or use kv_cache_type f16")
    dims = {d for d in (info.key_length, info.value_length) if d}
    bad = sorted(d for d in dims if d % kind.block)
    if bad:
        raise InvalidRequest(
            f"a {kind.name} KV cache needs a head dimension divisible by {kind.block}, and "
            f"this model's is {bad[0]}; use kv_cache_type f16")
