"""A scripted Runtime for the faces' tests: what the tiny model cannot show on demand
(tool calls, errors mid-stream, endless streams, pull progress) and what reaches it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from locallama.errors import Cancelled, InvalidRequest, PullError
from locallama.progress import ProgressEvent
from locallama.runtime.types import ChatRequest, Chunk, Embeddings, GenerateRequest, ModelEntry
from locallama.store import parse_name


class FakeRuntime:
    """Answers chat and generate from a script; records the requests it was given."""

    def __init__(self, script: list[Chunk] | None = None) -> None:
        self.requests: list[ChatRequest | GenerateRequest] = []
        self.script: list[Chunk] = script if script is not None else [
            Chunk(text="ok"), Chunk(done=True, done_reason="stop")]
        self.fail_after: int | None = None  # raise after this many chunks
        self.endless = False
        self.closed = threading.Event()

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        return self._stream()

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        return self._stream()

    def embed(self, model, inputs, truncate=True, options=None, keep_alive=None,
              dimensions=None):
        if dimensions not in (None, 2):  # as LocalRuntime: the model's size or nothing
            raise InvalidRequest("this model gives 2-dimensional embeddings; other "
                                 "dimensions are not supported", "dimensions")
        return Embeddings([[1.0, 0.0]] * len(inputs), len(inputs))

    def list(self):
        return [ModelEntry(parse_name("fake"), "sha256:0", 1, datetime.now(UTC))]

    def pull(self, model: str, progress=None, insecure: bool = False) -> None:
        try:
            while self.endless:
                time.sleep(0.01)
                progress(ProgressEvent("pulling forever"))
        except Cancelled:
            self.closed.set()
            raise
        for done in (0, 50, 100):
            progress(ProgressEvent(f"pulling {model}", "sha256:ab", 100, done))
            if done == 50 and self.fail_after is not None:
                raise PullError("the network went away")
        progress(ProgressEvent("success"))

    def _stream(self) -> Iterator[Chunk]:
        try:
            while self.endless:
                time.sleep(0.01)
                yield Chunk(text="x")
            for i, chunk in enumerate(self.script):
                if self.fail_after is not None and i == self.fail_after:
                    raise InvalidRequest("the model broke down")
                yield chunk
        finally:
            self.closed.set()
