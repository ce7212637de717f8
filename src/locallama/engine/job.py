"""A request to a loaded model as the scheduler sees it, and what it streams back.

Plain data, importable without llama.cpp: the runtime builds a :class:`Job` in the
server's (or the command's) process and the scheduler runs it, in the same process
or in the model's runner (``engine/runner.py``), which carries the job's fields
over its channel and fills in ``stats`` and ``prompt_scores`` the same way.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from locallama.cancel import CLIENT_GONE
from locallama.engine.params import GenerationStats
from locallama.engine.stops import StopMatcher, Utf8Stream
from locallama.engine.vision_types import ImageSpan
from locallama.errors import Cancelled
from locallama.options import Options
from locallama.runtime.types import TokenLogprob


@dataclass
class Piece:
    """Text released by the generation loop, with the logprobs of the tokens behind it."""

    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Job:
    """One request's tokens and wishes; the loop thread fills in the rest."""

    prompt: list[int]
    options: Options
    stops: tuple[str, ...] = ()
    grammar: str | None = None
    top_logprobs: int | None = None  # None: no logprobs for generated tokens
    score_top: int | None = None  # not None: logprobs of the prompt's tokens too ...
    score_from: int = 1  # ... from this one on (a continuation after a shared context)
    truncate: bool = True
    shift: bool = True  # at the context's end, drop the older half and go on (Ollama)
    #: special tokens whose text the output spells (reasoning and tool-call markers
    #: such as gpt-oss's <|channel|>, llama-server's "preserved tokens"); others are silent
    special: frozenset[int] = frozenset()
    #: the prompt's images (engine/vision_types.py): their positions in ``prompt`` hold
    #: placeholder ids, evaluated as embeddings by engine/vision.py
    images: tuple[ImageSpan, ...] = ()
    stats: GenerationStats = field(default_factory=GenerationStats)
    prompt_scores: list[TokenLogprob] | None = None

    def __post_init__(self) -> None:
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False
        self.finished = False
        # Loop-owned state.
        self.slot: Any = None  # the scheduler's slot
        self.sampler: Any = None  # engine.sampling.Sampler
        self.done_prompt = 0  # prompt tokens in the KV cache
        self.wait: Any = None  # engine.prefill.Wait: a prefix another slot is evaluating
        self.next_token: int | None = None  # sampled, not yet evaluated
        self.drafter: Any = None  # speculative decoding's state (engine/speculative.py)
        self.generated: list[int] = []
        self.matcher = StopMatcher(self.stops)
        self.utf8 = Utf8Stream()
        self.pending_logprobs: list[TokenLogprob] = []
        self.spelled: list[bytes] = []
        self.started = 0
        self.prompt_started = 0
        self.eval_started = 0
        self.embeddings: dict[int, Any] = {}  # image start -> (embeddings, non_causal)

    @property
    def prompt_pending(self) -> bool:
        """Whether prompt tokens remain to be evaluated (or copied)."""
        return self.done_prompt < len(self.prompt)

    @property
    def logits_from(self) -> int:
        """The first prompt position whose logits this job needs."""
        if self.score_top is not None:
            return max(0, min(self.score_from, len(self.prompt)) - 1)
        return len(self.prompt) - 1


_GONE_POLL_S = 0.05  # how often a waiting request looks whether its client left


class PieceStream(Iterator[Piece]):
    """What ``submit`` returns: ``pieces`` (a generator that cancels its job when
    closed while running) whose ``close()`` also cancels a job it never started
    reading, through ``cancel_unread()``.  A bare generator closed before its first
    ``next`` skips its ``finally``, so the job would go on with nobody reading (a
    caller that fails between ``submit`` and its first read).  ``close()`` from
    another thread while one reads calls ``cancel_running()`` (the job's own cancel,
    which leaves the reader to see its end): a generator cannot be closed while it
    runs.  Closing twice, or after the end, does nothing more."""

    def __init__(self, pieces: Generator[Piece, None, None],
                 cancel_unread: Callable[[], None],
                 cancel_running: Callable[[], None] | None = None) -> None:
        self._pieces, self._cancel_unread = pieces, cancel_unread
        self._cancel_running = cancel_running or cancel_unread
        self._lock = threading.Lock()
        self._closed = False

    def __next__(self) -> Piece:
        with self._lock:
            if self._closed:
                raise StopIteration
        return next(self._pieces)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        unread = inspect.getgeneratorstate(self._pieces) == inspect.GEN_CREATED
        try:
            self._pieces.close()
        except ValueError:  # "generator already executing": another thread reads it
            self._cancel_running()
            return
        if unread:
            self._cancel_unread()


def stream_pieces(job: Job, cancel: Callable[[Job], None]) -> Generator[Piece, None, None]:
    """The job's pieces as its scheduler puts them on ``job.events``; an error event
    is raised, the done event ends it, and a consumer that stops early (closes the
    iterator) has ``cancel(job)`` called.  When the request has a ``CLIENT_GONE`` event
    (a server request) and it is set, the job is cancelled within ``_GONE_POLL_S``
    (Cancelled): a client that leaves a non-streaming answer, or one still queued,
    stops its work too, not only one whose stream is closed."""
    gone = CLIENT_GONE.get()
    try:
        while True:
            if gone is None:
                kind, value = job.events.get()
            else:
                if gone.is_set():
                    raise Cancelled("the client went away")
                try:
                    kind, value = job.events.get(timeout=_GONE_POLL_S)
                except queue.Empty:
                    continue
            if kind == "piece":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        if not job.finished:
            cancel(job)
