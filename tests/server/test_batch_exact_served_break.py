"""Through a real server with the speed settings unset: 8 concurrent seeded requests
on weights that keep both settings off answer exactly what each answers alone, and
`locallama ps --json` (the CLI, against the server) shows what each model has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liveserver import free_port, serve
from runtimes import local_runtime
from tinymodel import F16, F32, Q8_0, write_tiny_gguf

PROMPTS = [f"tell me about the {w} of water" for w in
           ["one", "two", "three", "four", "five", "six", "seven", "eight"]]


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("served")
    models = [(name, write_tiny_gguf(home / f"{name}.gguf", file_type=kind))
              for name, kind in (("f32", F32), ("q8", Q8_0), ("f16", F16))]
    runtime = local_runtime(home, *models, host="127.0.0.1", port=free_port(),
                            num_parallel=8)
    try:
        with serve(runtime, runtime.settings) as base:
            yield base
    finally:
        runtime.close()


def answer(url: str, model: str, prompt: str) -> str:
    with httpx.Client(base_url=url, timeout=120) as http:
        reply = http.post("/api/generate", json={
            "model": model, "prompt": prompt, "stream": False,
            "options": {"num_predict": 24, "temperature": 0.8, "seed": 7}})
        assert reply.status_code == 200, reply.text
        return reply.json()["response"]


@pytest.mark.parametrize("model", ["f32", "q8"])
def test_eight_batched_answers_are_the_answers_alone(url: str, model: str) -> None:
    alone = [answer(url, model, p) for p in PROMPTS]
    together: list[str | None] = [None] * len(PROMPTS)

    def ask(i: int) -> None:
        together[i] = answer(url, model, PROMPTS[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone
    assert len(set(alone)) > 1  # the prompts gave different answers: a real check


def test_ps_json_through_the_cli_shows_each_models_speed_settings(url: str,
                                                                   tmp_path: Path) -> None:
    for model in ("f32", "q8", "f16"):
        answer(url, model, "hi")
    env = {**os.environ, "LOCALLAMA_HOST": url.removeprefix("http://"),
           "HOME": str(tmp_path)}
    env.pop("LOCALLAMA_API_KEY", None)
    out = subprocess.run([sys.executable, "-m", "locallama", "ps", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = {m["name"]: (m["flash_attention"], m["repack"]) for m in json.loads(out.stdout)}
    assert got == {"f32:latest": (False, False), "q8:latest": (False, False),
                   "f16:latest": (True, True)}
