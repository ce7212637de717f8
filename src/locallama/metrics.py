"""Counters and histograms for ``GET /metrics``, and the per-request note they hang on.

A low layer: the server's guard opens a ``RequestNote`` for each request (a context
variable, so it follows the request into the worker threads that anyio starts with a
copy of the context); the runtime below writes into whichever note is current
(``note_model``, ``observe_generation``) without knowing about HTTP.  Outside a
request (the CLI in-process) there is no note and the calls do nothing.

Metric names follow Prometheus' conventions (base units: seconds, bytes; counters
end in ``_total``).  Each ``Metrics`` has its own ``CollectorRegistry``, so several
apps in one process (tests) never share counts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client loads with the first Metrics: the CLI never needs it
    from prometheus_client.core import Metric

__all__ = ["LoadedSample", "Metrics", "RequestNote", "begin_request",
           "end_request", "note_model", "observe_generation"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RATE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000)


@dataclass(frozen=True)
class LoadedSample:
    """One loaded model at scrape time: its name, memory in bytes, requests waiting."""

    model: str
    size_bytes: int
    waiting: int = 0


class Metrics:
    """The registry behind one app's ``/metrics``.

    ``loaded`` is called at every scrape and returns the models loaded now (from
    ``Runtime.ps()``); it must not raise.
    """

    def __init__(self, loaded: Callable[[], Iterable[LoadedSample]] = lambda: ()) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("locallama_http_requests", "HTTP requests answered, by route "
                                "template, method and status", ["route", "method", "status"],
                                registry=r)
        self.request_seconds = Histogram("locallama_http_request_duration_seconds",
                                         "Time from a request's arrival to its answer's last "
                                         "byte", ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("locallama_prompt_tokens", "Prompt tokens given to models "
                                     "(cached ones included)", ["model"], registry=r)
        self.generated_tokens = Counter("locallama_generated_tokens", "Tokens models generated",
                                        ["model"], registry=r)
        self.queue_seconds = Histogram("locallama_queue_wait_seconds", "Time a request waited "
                                       "for a free sequence of its model", ["model"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.first_token_seconds = Histogram("locallama_time_to_first_token_seconds",
                                             "Time from a generation's start (model load "
                                             "included) to its first token", ["model"],
                                             buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens_per_second = Histogram("locallama_generation_tokens_per_second",
                                           "Generation speed of each answer (tokens after "
                                           "the first / decode time)", ["model"],
                                           buckets=_RATE_BUCKETS, registry=r)
        r.register(_LoadedCollector(loaded))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``route`` is a template (``/api/blobs/{digest}``),
        never a raw path, so the label set stays bounded."""
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def observe_generation(self, model: str, prompt_tokens: int, generated_tokens: int,
                           queue_s: float | None, first_token_s: float | None,
                           decode_s: float) -> None:
        """Record one finished generation (times in seconds; None: not measured)."""
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generated_tokens.labels(model).inc(generated_tokens)
        if queue_s is not None:
            self.queue_seconds.labels(model).observe(max(0.0, queue_s))
        if first_token_s is not None:
            self.first_token_seconds.labels(model).observe(max(0.0, first_token_s))
        if generated_tokens > 1 and decode_s > 0:
            self.tokens_per_second.labels(model).observe(generated_tokens / decode_s)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text exposition format (``content_type``)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    @property
    def content_type(self) -> str:
        """The exposition's media type: text format 0.0.4, which every Prometheus reads."""
        return "text/plain; version=0.0.4; charset=utf-8"


class _LoadedCollector:
    """Gauges read at scrape time: loaded models, their memory, requests waiting."""

    def __init__(self, loaded: Callable[[], Iterable[LoadedSample]]) -> None:
        self._loaded = loaded

    def describe(self) -> list[Metric]:
        return []  # values come from the runtime at collect time only

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        samples = list(self._loaded())
        count = GaugeMetricFamily("locallama_loaded_models", "Models loaded now")
        count.add_metric([], len(samples))
        memory = GaugeMetricFamily("locallama_loaded_model_bytes",
                                   "Memory a loaded model holds (weights + KV cache estimate)",
                                   labels=["model"])
        waiting = GaugeMetricFamily("locallama_queue_length",
                                    "Requests waiting for a free sequence of a loaded model",
                                    labels=["model"])
        for sample in samples:
            memory.add_metric([sample.model], sample.size_bytes)
            waiting.add_metric([sample.model], sample.waiting)
        yield count
        yield memory
        yield waiting


# -- the per-request note ------------------------------------------------------------


@dataclass
class RequestNote:
    """What the layers below learn about the request in flight (the access log's
    ``model``), and where they record."""

    metrics: Metrics | None = None
    model: str | None = None


_NOTE: contextvars.ContextVar[RequestNote | None] = contextvars.ContextVar(
    "locallama_request_note", default=None)


def begin_request(metrics: Metrics | None) -> tuple[RequestNote, contextvars.Token]:
    """Open a note for the request this task serves; pass the token to ``end_request``."""
    note = RequestNote(metrics)
    return note, _NOTE.set(note)


def end_request(token: contextvars.Token) -> None:
    _NOTE.reset(token)


def note_model(name: str) -> None:
    """The current request is about model ``name`` (the first one named wins)."""
    note = _NOTE.get()
    if note is not None and note.model is None:
        note.model = name


def observe_generation(model: str, prompt_tokens: int, generated_tokens: int,
                       queue_s: float | None, first_token_s: float | None,
                       decode_s: float) -> None:
    """``Metrics.observe_generation`` on the current request's metrics, if any."""
    note = _NOTE.get()
    if note is not None and note.metrics is not None:
        note.metrics.observe_generation(model, prompt_tokens, generated_tokens, queue_s,
                                        first_token_s, decode_s)
