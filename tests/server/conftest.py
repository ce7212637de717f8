"""A live server on a free loopback port, over a LocalRuntime with the tiny model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from liveserver import free_port, serve
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from runtimes import local_runtime


@dataclass
class LiveServer:
    runtime: LocalRuntime
    settings: Settings
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path):
    """Module-scoped: starting llama.cpp contexts is cheap, but not free."""
    runtime = local_runtime(tmp_path_factory.mktemp("server"), ("tiny", tiny_gguf),
                            host="127.0.0.1", port=free_port())
    with serve(runtime, runtime.settings) as url:
        yield LiveServer(runtime, runtime.settings, url)
    runtime.close()
