"""A live server on a free loopback port, over a LocalRuntime with the tiny model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from liveserver import free_port, serve
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store.modelfile import parse_modelfile


@dataclass
class LiveServer:
    runtime: LocalRuntime
    settings: Settings
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path):
    """Module-scoped: starting llama.cpp contexts is cheap, but not free."""
    home = tmp_path_factory.mktemp("server")
    settings = Settings(host="127.0.0.1", port=free_port(), models_dir=home / "models",
                        history_file=home / "history")
    runtime = LocalRuntime(settings)
    runtime.create("tiny", parse_modelfile(f"FROM {tiny_gguf}\n"), home)
    with serve(runtime, settings) as url:
        yield LiveServer(runtime, settings, url)
    runtime.close()
