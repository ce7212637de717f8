"""A fake Runtime for the everyday tests: words as tokens, answers computed from the prompt.

A random-weight model answers noise, so what a task sends and how it puts the
answers together is tested here: ``tokenize`` gives one token per word (plus a
BOS), so budgets are easy to reason about, and ``respond`` turns each prompt into
an answer (by default the text between "Text:" and the cue line, upper-cased), so
a test can see which piece went where.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from locallama.runtime.types import ChatRequest, Chunk, GenerateRequest, ModelDetails


def shout_text(prompt: str) -> str:
    """The recipe's ``Text:`` block upper-cased (translate and fix put the piece there)."""
    match = re.search(r"\nText:\n(.*)\n\n[^\n]*:\n$", prompt, re.S)
    return (match.group(1) if match else prompt).upper()


class WordRuntime:
    """Chat model (``template``) or base model (None); records every request."""

    def __init__(self, respond: Callable[[str], str] = shout_text, *, chat_model: bool = True,
                 num_ctx: int | None = None, context_length: int = 100_000) -> None:
        self.respond = respond
        self.chat_model = chat_model
        self.parameters: dict[str, Any] = {"num_ctx": num_ctx} if num_ctx else {}
        self.context_length = context_length
        self.requests: list[ChatRequest | GenerateRequest] = []
        self.prompts: list[str] = []

    def tokenize(self, model: str, text: str) -> list[int]:
        return [1] + [len(w) for w in text.split()]

    def show(self, model: str) -> ModelDetails:
        return ModelDetails(
            name=model, digest="sha256:0", size=1, architecture="fake", parameter_count=1,
            context_length=self.context_length, embedding_length=8, quantization="F32",
            template="{{ messages }}" if self.chat_model else None, system=None,
            parameters=dict(self.parameters), messages=[], licenses=[], modelfile="")

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        prompt = request.messages[-1].content
        return self._stream(prompt)

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        return self._stream(request.prompt)

    def _stream(self, prompt: str) -> Iterator[Chunk]:
        self.prompts.append(prompt)
        text = " " + self.respond(prompt) + "\n"  # whitespace around, as models write it
        middle = len(text) // 2
        yield Chunk(text=text[:middle])
        yield Chunk(text=text[middle:])
        yield Chunk(done=True, done_reason="stop")
