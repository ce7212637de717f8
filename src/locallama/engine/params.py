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
    draft: Path | None = None  # a draft model for speculative decoding (engine/draft.py)

    @classmethod
    def from_options(cls, options: Options, info: GGUFInfo, embedding: bool = False,
                     num_parallel: int = 1) -> ContextParams:
        num_ctx = options.num_ctx
        if info.context_length:
            num_ctx = min(num_ctx, info.context_length)
        return cls(num_ctx, min(options.num_batch, num_ctx), options.num_gpu,
                   options.use_mmap, embedding, options.threads,
                   1 if embedding else num_parallel)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # the whole prompt
    prompt_eval_count: int = 0  # evaluated now (the rest came from the cache)
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    done_reason: str = "stop"
    stop_sequence: str | None = None  # the stop string that ended generation, if one did
    truncated: bool = False
    tokens: tuple[int, ...] = ()  # prompt + generated, Ollama's ``context``
    draft_n: int = 0  # speculative decoding: tokens drafted (llama-server's timings names)
    draft_n_accepted: int = 0  # ... and accepted by the target


