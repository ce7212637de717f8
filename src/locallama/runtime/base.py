"""The Runtime interface: what the CLI, server faces, evals and tasks talk to.

One interface, two implementations: :class:`~locallama.runtime.local.LocalRuntime`
owns the store and the engine in this process; a remote one (later) speaks HTTP
to a running server.  Requests and chunks are plain dataclasses so both faces
and both runtimes share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from locallama.engine.params import TokenLogprob
from locallama.progress import Progress
from locallama.store import ModelEntry

__all__ = ["Progress", "TokenLogprob"]


KeepAlive = str | int | float | None
"""A duration ("5m", "1h30m", "300ms"), seconds as a number, 0 to unload at once,
negative to keep forever; None means the server default (LOCALLAMA_KEEP_ALIVE)."""

Format = str | dict[str, Any] | None
"""Structured output: "json" for any JSON value, or a JSON schema (a dict)."""


@dataclass
class GenerateRequest:
    """A completion: a prompt, formatted with the model's template unless ``raw``."""

    model: str
    prompt: str = ""
    system: str | None = None
    template: str | None = None
    suffix: str = ""
    raw: bool = False
    context: list[int] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: Format = None
    images: list[str] | None = None  # base64; refused for models without vision
    keep_alive: KeepAlive = None
    logprobs: bool = False  # log-probability of each generated token
    top_logprobs: int = 0  # and of this many alternatives at each step
    echo: bool = False  # also score the prompt's own tokens (Chunk.prompt_logprobs)
    truncate: bool = True  # False: a prompt longer than the context is an error
    shift: bool = True  # False: stop at the context's end instead of shifting it


@dataclass
class ChatRequest:
    """A conversation: messages with roles system/user/assistant/tool.

    A message is a dict with ``role`` and ``content`` (a string), and optionally
    ``images`` (base64 strings), ``tool_calls`` (for assistant messages, Ollama's
    shape: ``[{"function": {"name": ..., "arguments": {...}}}]``) and ``tool_name``.
    """

    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    format: Format = None
    tools: list[dict[str, Any]] | None = None  # OpenAI/Ollama function-tool schema
    keep_alive: KeepAlive = None
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True  # False: a conversation longer than the context is an error
    shift: bool = True  # False: stop at the context's end instead of shifting it


@dataclass
class Chunk:
    """One piece of a streamed answer; the last has ``done`` and the counts.

    Durations are in nanoseconds and counts in tokens, with Ollama's meanings:
    prompt_eval_* covers the prompt tokens evaluated (not those reused from a
    cache), eval_* the generated tokens.
    """

    text: str = ""
    done: bool = False
    done_reason: str | None = None  # "stop", "length" or "cancel"
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    load_duration: int = 0
    total_duration: int = 0
    context: list[int] | None = None
    logprobs: list[TokenLogprob] | None = None  # the tokens behind this chunk's text
    prompt_logprobs: list[TokenLogprob] | None = None  # with echo, on the first chunk;
    # the first prompt token has no logprob (nothing precedes it): logprob is nan
    tool_calls: list[dict[str, Any]] | None = None  # on the final chunk, Ollama's shape
    prompt_tokens: int = 0  # the whole prompt, cached or not (OpenAI usage)
    warnings: list[str] = field(default_factory=list)  # e.g. "prompt truncated"

    @property
    def eval_rate(self) -> float:
        return self.eval_count / (self.eval_duration / 1e9) if self.eval_duration else 0.0

    @property
    def prompt_eval_rate(self) -> float:
        if not self.prompt_eval_duration:
            return 0.0
        return self.prompt_eval_count / (self.prompt_eval_duration / 1e9)


@dataclass
class Score:
    """How likely a model finds a continuation after a context (log-likelihood scoring)."""

    logprob: float  # natural-log probability of the whole continuation
    greedy: bool  # every continuation token was the model's most likely next token
    token_logprobs: list[float]  # one per continuation token

    @property
    def tokens(self) -> int:
        return len(self.token_logprobs)


@dataclass
class LoadedModelInfo:
    """One line of ``ps``."""

    name: str
    digest: str
    size: int  # bytes in memory (weights + KV cache + compute), estimated
    expires_at: datetime | None  # None: kept until stopped
    context_length: int
    details: dict[str, Any] = field(default_factory=dict)
    size_vram: int = 0  # bytes on a GPU (0: all in system memory)


@dataclass
class Embeddings:
    embeddings: list[list[float]]
    prompt_eval_count: int
    total_duration: int = 0
    load_duration: int = 0


@dataclass
class ModelDetails:
    """What ``show`` reports about a model."""

    name: str
    digest: str
    size: int
    architecture: str
    parameter_count: int
    context_length: int | None
    embedding_length: int | None
    quantization: str
    template: str | None
    system: str | None
    parameters: dict[str, Any]
    messages: list[dict[str, Any]]
    licenses: list[str]
    modelfile: str
    model_info: dict[str, Any] = field(default_factory=dict)
    modified_at: str = ""
    capabilities: list[str] = field(default_factory=lambda: ["completion"])


class Runtime(Protocol):
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]: ...

    def chat(self, request: ChatRequest) -> Iterator[Chunk]: ...

    def embed(
        self, model: str, inputs: list[str], truncate: bool = True,
        options: dict[str, Any] | None = None, keep_alive: KeepAlive = None,
    ) -> Embeddings: ...

    def score(self, model: str, pairs: list[tuple[str, str]],
              options: dict[str, Any] | None = None,
              progress: Callable[[int], None] | None = None) -> list[Score]:
        """Score each (context, continuation) pair, in order.

        The context is tokenized with the model's BOS and the continuation is what
        the whole text adds to it (lm-evaluation-harness's split).  Pairs that
        share a context reuse its KV cache; ``progress`` gets the count done."""
        ...

    def score_tokens(self, model: str, windows: list[list[int]], score_from: int,
                     options: dict[str, Any] | None = None,
                     progress: Callable[[int], None] | None = None) -> list[list[float]]:
        """Log-probability of each window's tokens from ``score_from`` on, each given
        the tokens before it in its window (perplexity's primitive).  Windows are
        token ids as given, no BOS added, evaluated apart; ``progress`` gets the
        count of windows done."""
        ...

    def load(self, model: str, keep_alive: KeepAlive = None,
             options: dict[str, Any] | None = None) -> None:
        """Load a model without generating (an empty prompt in Ollama's API)."""
        ...

    def unload(self, model: str) -> None:
        """Unload now (keep_alive 0; ``locallama stop``)."""
        ...

    def ps(self) -> list[LoadedModelInfo]: ...

    def tokenize(self, model: str, text: str) -> list[int]: ...

    def detokenize(self, model: str, tokens: list[int]) -> str: ...

    def list(self) -> list[ModelEntry]: ...

    def show(self, model: str) -> ModelDetails: ...

    def create(self, model: str, modelfile: str, base_dir: Path,
               progress: Progress | None = None, quantize: str | None = None,
               imatrix: Path | None = None) -> None:
        """Build ``model`` from a Modelfile; with ``quantize`` (a llama.cpp type such as
        Q4_K_M), its model data is quantized first, with ``imatrix`` if given."""

    def copy(self, source: str, destination: str) -> None: ...

    def delete(self, model: str) -> None: ...

    def pull(self, model: str, progress: Progress | None = None) -> None: ...

    def has_blob(self, digest: str) -> bool: ...

    def add_blob(self, digest: str, data: Iterable[bytes]) -> None:
        """Store uploaded bytes under ``digest``; DigestMismatch if they hash otherwise."""
        ...

    def blob_path(self, digest: str) -> Path:
        """Where a stored blob lives (for a Modelfile FROM built from uploaded files)."""
        ...

    def close(self) -> None: ...
