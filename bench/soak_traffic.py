"""The well-formed traffic of bench/soak.py: the request kinds both faces get, what
each checks in its answer, and their weights in the draw.  A kind raises Broken (a
wrong answer) or an httpx error; ``run_kind`` times it and counts the outcome."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import httpx

from soak_probes import parse_json

PROMPTS = ["Why is the sky blue?", "Name three rivers.", "Write a haiku about tea.",
           "What is a prime number?", "Say hello in French.", "Count to five.",
           "Describe a cat in one line.", "What is the capital of Italy?"]


class Broken(Exception):
    """A well-formed request got a wrong answer (the message says what)."""


def _check_status(response: httpx.Response) -> None:
    if not 200 <= response.status_code < 300:
        response.read()
        raise Broken(f"HTTP {response.status_code}: {response.text[:200]}")


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise Broken(what)


def ollama_lines(response: httpx.Response, keep: int | None = None) -> Iterator[dict]:
    """Parsed NDJSON lines; an ``error`` line is a Broken stream."""
    for n, line in enumerate(response.iter_lines()):
        if keep is not None and n >= keep:
            return
        if not line.strip():
            continue
        chunk = parse_json(line.encode())
        _expect(isinstance(chunk, dict), f"a stream line is not a JSON object: {line[:100]}")
        _expect("error" not in chunk, f"error in the stream: {chunk.get('error')}")
        yield chunk


def sse_events(response: httpx.Response, keep: int | None = None) -> Iterator[Any]:
    """Parsed ``data:`` events (the string "[DONE]" as is); an error event is Broken."""
    n = 0
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        if keep is not None and n >= keep:
            return
        n += 1
        data = line[6:]
        if data == "[DONE]":
            yield data
            continue
        event = parse_json(data.encode())
        _expect(isinstance(event, dict), f"an event is not a JSON object: {data[:100]}")
        _expect("error" not in event, f"error in the stream: {event.get('error')}")
        yield event


def _last(items: Iterator[Any]) -> Any:
    """The last item (None when there is none), reading everything."""
    last = None
    for item in items:
        last = item
    return last


class Mix:
    """The well-formed request kinds; each method raises Broken or an httpx error."""

    def __init__(self, model: str, rng: random.Random) -> None:
        self.model, self.rng = model, rng

    def _prompt(self) -> str:
        return self.rng.choice(PROMPTS)

    def _tokens(self) -> int:
        return self.rng.randint(8, 16)

    def _options(self) -> dict[str, Any]:
        return {"num_predict": self._tokens(), "temperature": 0.7, "seed": self.rng.randint(0, 9)}

    def _messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self._prompt()}]

    # Ollama face
    def _ollama(self, http: httpx.Client, path: str, body: dict[str, Any], answer: str
                ) -> None:
        """One answer (``stream`` false) whose ``answer`` field is there, done."""
        r = http.post(path, json={"model": self.model, **body, "stream": False,
                                  "options": self._options()})
        _check_status(r)
        data = r.json()
        _expect(data.get("done") is True and answer in data,
                f"not a {path} answer: {r.text[:200]}")

    def _ollama_stream(self, http: httpx.Client, path: str, body: dict[str, Any]) -> None:
        """A streamed answer read to its last line, which says done."""
        with http.stream("POST", path, json={"model": self.model, **body,
                                             "options": self._options()}) as r:
            _check_status(r)
            last = _last(ollama_lines(r))
            _expect(bool(last and last.get("done")), "the stream ended without done: true")

    def generate(self, http: httpx.Client) -> None:
        self._ollama(http, "/api/generate", {"prompt": self._prompt()}, "response")

    def generate_stream(self, http: httpx.Client) -> None:
        self._ollama_stream(http, "/api/generate", {"prompt": self._prompt()})

    def chat(self, http: httpx.Client) -> None:
        self._ollama(http, "/api/chat", {"messages": self._messages()}, "message")

    def chat_stream(self, http: httpx.Client) -> None:
        self._ollama_stream(http, "/api/chat", {"messages": self._messages()})

    def chat_stream_dropped(self, http: httpx.Client) -> None:
        body = {"model": self.model, "messages": self._messages(),
                "options": {**self._options(), "num_predict": 64}}
        with http.stream("POST", "/api/chat", json=body) as r:
            _check_status(r)
            for _ in ollama_lines(r, keep=2):
                pass
        # leaving the block closes the connection mid-stream

    def tags(self, http: httpx.Client) -> None:
        r = http.get("/api/tags")
        _check_status(r)
        name = self.model if ":" in self.model else f"{self.model}:latest"
        _expect(any(m.get("name") == name for m in r.json().get("models", [])),
                f"{name} is missing from /api/tags")

    def show(self, http: httpx.Client) -> None:
        r = http.post("/api/show", json={"model": self.model})
        _check_status(r)
        _expect("details" in r.json(), f"not a show answer: {r.text[:200]}")

    def embed(self, http: httpx.Client) -> None:
        r = http.post("/api/embed", json={"model": self.model, "input": self._prompt()})
        _check_status(r)
        vectors = r.json().get("embeddings")
        _expect(isinstance(vectors, list) and len(vectors) == 1 and len(vectors[0]) > 0,
                f"not an embed answer: {r.text[:200]}")

    # OpenAI face
    def _openai(self, **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self._tokens(), "temperature": 0.7, **extra}

    def openai_chat(self, http: httpx.Client) -> None:
        r = http.post("/v1/chat/completions", json=self._openai(messages=self._messages()))
        _check_status(r)
        choices = r.json().get("choices")
        _expect(bool(choices) and "message" in choices[0], f"not a completion: {r.text[:200]}")

    def _openai_stream(self, http: httpx.Client, path: str, body: dict[str, Any]) -> None:
        """Server-sent events read to the end, which is ``[DONE]``."""
        with http.stream("POST", path, json=body) as r:
            _check_status(r)
            events = list(sse_events(r))
            _expect(bool(events) and events[-1] == "[DONE]", "the stream ended without [DONE]")

    def openai_chat_stream(self, http: httpx.Client) -> None:
        self._openai_stream(http, "/v1/chat/completions",
                            self._openai(messages=self._messages(), stream=True))

    def openai_chat_stream_dropped(self, http: httpx.Client) -> None:
        body = self._openai(messages=self._messages(), stream=True, max_tokens=64)
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            _check_status(r)
            for _ in sse_events(r, keep=2):
                pass

    def openai_completion(self, http: httpx.Client) -> None:
        r = http.post("/v1/completions", json=self._openai(prompt=self._prompt()))
        _check_status(r)
        choices = r.json().get("choices")
        _expect(bool(choices) and "text" in choices[0], f"not a completion: {r.text[:200]}")

    def openai_completion_stream(self, http: httpx.Client) -> None:
        self._openai_stream(http, "/v1/completions",
                            self._openai(prompt=self._prompt(), stream=True))

    def models(self, http: httpx.Client) -> None:
        r = http.get("/v1/models")
        _check_status(r)
        _expect(isinstance(r.json().get("data"), list), f"not a model list: {r.text[:200]}")

    def openai_embeddings(self, http: httpx.Client) -> None:
        r = http.post("/v1/embeddings", json={"model": self.model, "input": self._prompt()})
        _check_status(r)
        data = r.json().get("data")
        _expect(bool(data) and len(data[0].get("embedding", [])) > 0,
                f"not an embeddings answer: {r.text[:200]}")


#: kind -> (Mix method, weight in the draw)
KINDS: dict[str, tuple[Callable[[Mix, httpx.Client], None], int]] = {
    "api/generate": (Mix.generate, 3),
    "api/generate stream": (Mix.generate_stream, 3),
    "api/chat": (Mix.chat, 3),
    "api/chat stream": (Mix.chat_stream, 3),
    "api/chat stream, dropped": (Mix.chat_stream_dropped, 2),
    "v1/chat/completions": (Mix.openai_chat, 3),
    "v1/chat/completions stream": (Mix.openai_chat_stream, 3),
    "v1/chat/completions stream, dropped": (Mix.openai_chat_stream_dropped, 2),
    "v1/completions": (Mix.openai_completion, 3),
    "v1/completions stream": (Mix.openai_completion_stream, 3),
    "api/tags": (Mix.tags, 1),
    "api/show": (Mix.show, 1),
    "v1/models": (Mix.models, 1),
    "api/embed": (Mix.embed, 1),
    "v1/embeddings": (Mix.openai_embeddings, 1),
}


class Recorder(Protocol):
    """Where an outcome goes (``soak.Results``): kind, seconds, error or None."""

    def add(self, kind: str, seconds: float, error: str | None) -> None: ...


def run_kind(kind: str, mix: Mix, http: httpx.Client, results: Recorder) -> None:
    """Send one request of ``kind`` and record its time and error."""
    started = time.perf_counter()
    error = None
    try:
        KINDS[kind][0](mix, http)
    except Broken as exc:
        error = str(exc)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    results.add(kind, time.perf_counter() - started, error)
