"""Plain data about contexts and generations, importable without loading llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from locallama.gguf_info import GGUFInfo
from locallama.options import Options


@dataclass(frozen=True)
class ContextParams:
    """What a loaded context is built with; a request that needs others reloads."""

    num_ctx: int
    num_batch: int
    num_gpu: int
    use_mmap: bool
    embedding: bool = False
    threads: int = 1
    num_parallel: int = 1  # sequences decoded together, each with num_ctx tokens
    flash_attention: bool = False
    projector: str | None = None  # a vision projector (mmproj GGUF) loaded beside it
    kv_cache_type: str = "f16"  # kvcache.KV_CACHE_TYPES; "" until the loader resolves it
    repack: bool = False  # llama.cpp's repacked weight layouts (use_extra_bufts)
    draft: Path | None = None  # a draft model for speculative decoding (engine/draft.py)
    batch_padding: bool = True  # generation steps padded where faster (engine/padding.py)

    @classmethod
    def from_options(cls, options: Options, info: GGUFInfo, embedding: bool = False,
                     num_parallel: int = 1) -> ContextParams:
        num_ctx = options.num_ctx
        if info.context_length:
            num_ctx = min(num_ctx, info.context_length)
        return cls(num_ctx, min(options.num_batch, num_ctx), options.num_gpu,
                   options.use_mmap, embedding, options.threads,
                   1 if embedding else num_parallel,
                   kv_cache_type="f16" if embedding else options.kv_cache_type)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # the whole prompt
    prompt_eval_count: int = 0  # evaluated now (the rest came from the cache)
    prompt_shared_count: int = 0  # of the cached rest, copied from another slot's cache
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    done_reason: str = "stop"
    stop_sequence: str | None = None  # the stop string that ended generation, if one did
    truncated: bool = False
    tokens: tuple[int, ...] = ()  # prompt + generated, Ollama's ``context``
    draft_n: int = 0  # speculative decoding: tokens drafted (llama-server's timings names)
    draft_n_accepted: int = 0  # ... and accepted by the target


@dataclass
class PromptCounts:
    """Prompt tokens of a model's finished jobs: evaluated, taken from a cache (its own
    slot's or another's), and of those copied from another slot (``ps``)."""

    evaluated: int = 0
    cached: int = 0
    shared: int = 0

    def add(self, stats: GenerationStats) -> None:
        """Count one job's ``GenerationStats``."""
        self.evaluated += stats.prompt_eval_count
        self.cached += max(0, stats.prompt_tokens - stats.prompt_eval_count)
        self.shared += stats.prompt_shared_count
