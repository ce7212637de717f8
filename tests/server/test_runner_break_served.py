"""Runners through a real server, tried the ways their first tests did not: a runner
that is stopped (SIGSTOP), not dead, must not stall the server's other requests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liveserver import free_port, serve
from runtimes import local_runtime

WAIT_S = 30.0  # generous: a loaded 2-core machine


@pytest.fixture
def url(tmp_path: Path, tiny_gguf: Path) -> Iterator[str]:
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), host="127.0.0.1", port=free_port())
    try:
        with serve(runtime, runtime.settings) as base:
            yield base
    finally:
        runtime.close()


def test_a_stopped_runner_does_not_stall_metrics_or_other_requests(url: str) -> None:
    """A scrape of /metrics asks each runner for its queue length; with a runner under
    SIGSTOP (a debugger, a paused container) it used to wait forever on the server's
    event loop, so every request, /api/version included, hung with it."""
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        answer = http.post("/api/generate", json={"model": "tiny", "prompt": "hi",
                                                  "stream": False,
                                                  "options": {"num_predict": 2}})
        assert answer.status_code == 200, answer.text
        [model] = http.get("/api/ps").json()["models"]
        os.kill(model["pid"], signal.SIGSTOP)
        try:
            started = time.monotonic()
            scrape = http.get("/metrics", timeout=10.0)
            assert scrape.status_code == 200
            assert 'locallama_loaded_models 1' in scrape.text
            assert http.get("/api/version", timeout=10.0).status_code == 200
            assert time.monotonic() - started < 10.0
        finally:
            os.kill(model["pid"], signal.SIGCONT)
        answer = http.post("/api/generate", json={"model": "tiny", "prompt": "hi",
                                                  "stream": False,
                                                  "options": {"num_predict": 2}})
        assert answer.status_code == 200, answer.text
