"""The Runtime interface: what the CLI, server faces, evals and tasks talk to.

One interface, two implementations: :class:`~locallama.runtime.local.LocalRuntime`
owns the store and the engine in this process; a remote one (later) speaks HTTP
to a running server.  Requests and chunks are plain dataclasses so both faces
and both runtimes share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from locallama.store import ModelEntry

Progress = Callable[[str], None]


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


@dataclass
class ChatRequest:
    """A conversation: messages with roles system/user/assistant/tool."""

    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


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

    @property
    def eval_rate(self) -> float:
        return self.eval_count / (self.eval_duration / 1e9) if self.eval_duration else 0.0

    @property
    def prompt_eval_rate(self) -> float:
        if not self.prompt_eval_duration:
            return 0.0
        return self.prompt_eval_count / (self.prompt_eval_duration / 1e9)


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


class Runtime(Protocol):
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]: ...

    def chat(self, request: ChatRequest) -> Iterator[Chunk]: ...

    def embed(
        self, model: str, inputs: list[str], truncate: bool = True,
        options: dict[str, Any] | None = None,
    ) -> Embeddings: ...

    def tokenize(self, model: str, text: str) -> list[int]: ...

    def detokenize(self, model: str, tokens: list[int]) -> str: ...

    def list(self) -> list[ModelEntry]: ...

    def show(self, model: str) -> ModelDetails: ...

    def create(self, model: str, modelfile: str, base_dir: Path,
               progress: Progress | None = None) -> None: ...

    def copy(self, source: str, destination: str) -> None: ...

    def delete(self, model: str) -> None: ...

    def pull(self, model: str, progress: Progress | None = None) -> None: ...

    def close(self) -> None: ...
