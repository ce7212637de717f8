"""The Runtime interface: what the CLI, server faces, evals and everyday commands talk to.

One interface, two implementations: :class:`~locallama.runtime.local.LocalRuntime`
owns the store and the engine in this process; ``client.RemoteRuntime`` speaks HTTP
to a running server.  Its requests, chunks and records are the plain dataclasses of
``runtime/types.py``, so both faces and both runtimes share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from locallama.progress import Progress
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    Embeddings,
    GenerateRequest,
    KeepAlive,
    LoadedModelInfo,
    ModelDetails,
    ModelEntry,
    Reranking,
    Score,
    TokenizerInfo,
)

if TYPE_CHECKING:
    from locallama.settings import Settings
    from locallama.store.modelfile import Modelfile


class Runtime(Protocol):
    """Everything a caller does with models; errors are ``locallama.errors`` types."""

    settings: Settings  # what this runtime was built with (history file, host, ...)

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]: ...

    def chat(self, request: ChatRequest) -> Iterator[Chunk]: ...

    def embed(
        self, model: str, inputs: list[str], truncate: bool = True,
        options: dict[str, Any] | None = None, keep_alive: KeepAlive = None,
        dimensions: int | None = None,
    ) -> Embeddings:
        """One normalized vector per input, in order, and the tokens they took.

        ``truncate`` false makes an input longer than the context an InvalidRequest
        instead of cutting it.  ``dimensions``, when given, must equal the model's
        embedding size: there is no truncation of vectors, so any other value is an
        InvalidRequest with ``param`` "dimensions" (both faces' ``dimensions`` field)."""
        ...

    def rerank(self, model: str, query: str, documents: list[str], top_n: int | None = None,
               options: dict[str, Any] | None = None, keep_alive: KeepAlive = None
               ) -> Reranking:
        """``documents`` ordered by a reranker's relevance to ``query``, best first.

        Each result carries the document's index in ``documents``, its score (higher is
        more relevant; each document is scored alone) and its text; ``top_n`` keeps the
        best n (None: all).  ``total_tokens`` counts every pair evaluated.  Errors:
        ModelNotFound; InvalidRequest for no documents, a ``top_n`` below 1, or a model
        without rank pooling (``{arch}.pooling_type`` 4), naming it."""
        ...

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

    def waiting(self) -> dict[str, int]:
        """Requests waiting for a free sequence, by loaded model name (for /metrics);
        empty where the runtime cannot tell."""
        ...

    def estimate(self, model: str, num_ctx: int, num_parallel: int = 1) -> int | None:
        """Bytes the model needs loaded with ``num_parallel`` sequences of ``num_ctx``
        tokens (weights + KV cache + compute, the loader's estimate); None where the
        model file is not on this machine (a remote runtime)."""
        ...

    def offline_models(self) -> list[str]:
        """Names that ``pull`` can fetch without a network (the bundled default)."""
        ...

    def tokenize(self, model: str, text: str, add_special: bool = True) -> list[int]:
        """Token ids of ``text``, special-token text parsed (``<s>`` is BOS);
        ``add_special``: with the BOS the model adds to a prompt."""
        ...

    def token_pieces(self, model: str, tokens: list[int]) -> list[bytes]:
        """Each token's bytes, special tokens spelled out; InvalidRequest for an id
        outside the vocabulary."""
        ...

    def tokenizer_info(self, model: str) -> TokenizerInfo:
        """What the model's tokenizer is (vLLM's /tokenizer_info): its kind, size,
        special tokens, context length and chat template."""
        ...

    def detokenize(self, model: str, tokens: list[int]) -> str: ...

    def count_chat_tokens(self, request: ChatRequest) -> int:
        """The tokens of the prompt ``chat(request)`` would evaluate: the model's template
        rendered over the messages and tools (the Modelfile's SYSTEM and MESSAGEs
        included), tokenized; nothing is generated (Anthropic's count_tokens).  Raises
        what ``chat`` raises before its first chunk."""
        ...

    def list(self) -> list[ModelEntry]: ...

    def show(self, model: str) -> ModelDetails: ...

    def create(self, model: str, modelfile: Modelfile, base_dir: Path,
               progress: Progress | None = None, quantize: str | None = None,
               imatrix: Path | None = None) -> None:
        """Build ``model`` from a parsed Modelfile (relative FROM/ADAPTER paths are under
        ``base_dir``); with ``quantize`` (a llama.cpp type such as Q4_K_M), its model
        data is quantized first, with ``imatrix`` if given."""

    def copy(self, source: str, destination: str) -> None: ...

    def delete(self, model: str) -> None: ...

    def pull(self, model: str, progress: Progress | None = None,
             insecure: bool = False) -> None:
        """Fetch ``model`` into the store, reporting ``progress``; ``insecure`` lets a
        registry answer over plain HTTP (Ollama's ``pull --insecure``)."""
        ...

    def has_blob(self, digest: str) -> bool: ...

    def add_blob(self, digest: str, data: Iterable[bytes]) -> None:
        """Store uploaded bytes under ``digest``; DigestMismatch if they hash otherwise."""
        ...

    def blob_path(self, digest: str) -> Path:
        """Where a stored blob lives (for a Modelfile FROM built from uploaded files)."""
        ...

    def close(self) -> None: ...
