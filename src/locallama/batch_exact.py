"""Flash attention and weight repacking, when the settings leave them unset: off where
they would cost a model its batch-independent answers, on where it has none to lose.

Both make llama.cpp faster on the CPU (README, *Determinism and its price*: 5-10% on
gemma3:270m at 1 and 8 streams), and both make a sequence's logits depend on how
many other sequences share its batch.  What that costs depends on the weights.
``bench/batch_exactness.py`` decoded 8 sequences together and each alone, with both
settings off, on the bundled gemma3:270m requantized to each type (32 tokens each,
greedy and seeded at temperature 0.8):

- F32, Q8_0, Q5_0, Q5_1, Q4_0 and Q4_1 weights gave all 8 answers the text they
  have alone, greedy and seeded: turning either setting on would give that up.
- F16 and BF16 (seeded: 2/8 and 1/8 the same), and every file with K-quant weights
  (Q2_K, Q3_K_M, Q4_K_M as shipped and as Ollama ships most models, Q5_K_M, Q6_K,
  and IQ4_NL / IQ4_XS, which hold Q5_K too: 0-3/8 greedy, 0/8 seeded) changed
  batched answers whatever the two settings said: llama.cpp's kernels for them
  round differently with the batch's shape.

So, unset, LOCALLAMA_FLASH_ATTENTION and LOCALLAMA_REPACK are off for a model whose
weight matrices are all of the first kind and on for any other; flash attention is
also on for a quantized KV cache, which needs it.  Types nobody measured (IQ1-IQ3,
ternary, MXFP4) count as the second kind: every type outside the first set that was
measured turned out so.
"""

from __future__ import annotations

from collections.abc import Iterable

# ggml type names (gguf.GGMLQuantizationType.name) whose kernels were measured to
# give a sequence the same logits however many others share its batch
BATCH_EXACT_TYPES = frozenset({"F32", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"})


def batching_changes_answers(tensor_types: Iterable[str]) -> bool:
    """Whether a model whose weight matrices are stored in ``tensor_types`` (ggml type
    names, as ``GGUFInfo.tensor_types``) gets other logits from llama.cpp's CPU kernels
    when other sequences share its batch, whatever flash attention and repacking say:
    True unless every type is in ``BATCH_EXACT_TYPES`` (see the module's docstring)."""
    return not BATCH_EXACT_TYPES.issuperset(tensor_types)


def speed_settings(tensor_types: Iterable[str], flash_attention: bool | None,
                   repack: bool | None, kv_cache_quantized: bool = False
                   ) -> tuple[bool, bool]:
    """(flash attention, repacking) for a model whose weight matrices are stored in
    ``tensor_types``: each setting as given (True/False), or where unset (None) on
    exactly when :func:`batching_changes_answers` (flash attention also for a quantized
    KV cache, ``kv_cache_quantized``)."""
    lost_anyway = batching_changes_answers(tensor_types)
    flash = flash_attention if flash_attention is not None else (
        lost_anyway or kv_cache_quantized)
    return flash, repack if repack is not None else lost_anyway
