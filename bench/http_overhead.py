"""Overhead of the HTTP path: streamed /api/generate and /v1/chat/completions against
the in-process Runtime, on gemma3:270m, same prompt and options, in one run.

A live server (uvicorn, in this process's threads) and the in-process Runtime
share one store; rounds alternate so that machine noise hits all three alike.
Tokens/s is generated tokens over the wall time from request to last token,
as a client sees it.  Prints a table and the ratios HTTP / in-process.

    .venv/bin/python bench/http_overhead.py [--rounds 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import ChatRequest, GenerateRequest, Message
from locallama.server.app import create_app
from locallama.settings import Settings

PROMPT = "Tell me about the history of the printing press."


def options(tokens: int) -> dict:
    # temperature 0 with no stop: every path generates exactly `tokens` tokens
    return {"temperature": 0, "num_predict": tokens, "seed": 1, "num_thread": 2}


def in_process_generate(runtime: LocalRuntime, tokens: int) -> float:
    started = time.perf_counter()
    final = list(runtime.generate(GenerateRequest("gemma3:270m", PROMPT,
                                                  options=options(tokens))))[-1]
    return final.eval_count / (time.perf_counter() - started)


def in_process_chat(runtime: LocalRuntime, tokens: int) -> float:
    started = time.perf_counter()
    messages = [Message("user", PROMPT)]
    final = list(runtime.chat(ChatRequest("gemma3:270m", messages, options(tokens))))[-1]
    return final.eval_count / (time.perf_counter() - started)


def ollama_generate(client: httpx.Client, tokens: int) -> float:
    body = {"model": "gemma3:270m", "prompt": PROMPT, "options": options(tokens)}
    started, count = time.perf_counter(), 0
    with client.stream("POST", "/api/generate", json=body) as response:
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk.get("done"):
                count = chunk["eval_count"]
    return count / (time.perf_counter() - started)


def openai_chat(client: httpx.Client, tokens: int) -> float:
    body = {"model": "gemma3:270m", "messages": [{"role": "user", "content": PROMPT}],
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0,
            "max_tokens": tokens, "seed": 1, "options": {"num_thread": 2}}
    started, count = time.perf_counter(), 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    count = usage["completion_tokens"]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(host="127.0.0.1", port=port, models_dir=Path(tmp))
        runtime = LocalRuntime(settings)
        runtime.pull("gemma3:270m")
        server = uvicorn.Server(uvicorn.Config(create_app(runtime, settings), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        client = httpx.Client(base_url=settings.base_url, timeout=600)
        while True:
            try:
                client.get("/")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        paths = {"in-process generate": lambda: in_process_generate(runtime, args.tokens),
                 "HTTP /api/generate": lambda: ollama_generate(client, args.tokens),
                 "in-process chat": lambda: in_process_chat(runtime, args.tokens),
                 "HTTP /v1/chat/completions": lambda: openai_chat(client, args.tokens)}
        for run in paths.values():  # warm-up: load the model, fill caches
            run()
        results: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, run in paths.items():
                results[name].append(run())
        server.should_exit = True
        thread.join(timeout=10)
        runtime.close()

    print(f"streamed generation, gemma3:270m, {args.tokens} tokens, {args.rounds} rounds; "
          "ratio: HTTP / the in-process call above it (median of per-round ratios)")
    print(f"{'path':<28}{'tokens/s':>10}{'':>10}{'ratio':>8}")
    base: list[float] = []
    for name, values in results.items():
        if name.startswith("in-process"):
            base = values
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<28}{statistics.mean(values):>10.2f} ± {sd:<6.2f}{ratio:>8.3f}")


if __name__ == "__main__":
    main()
