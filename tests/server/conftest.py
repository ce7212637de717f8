"""A live server on a free loopback port, over a LocalRuntime with the tiny model."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from locallama.runtime.local import LocalRuntime
from locallama.server.app import create_app
from locallama.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, runtime: LocalRuntime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.url = settings.base_url
        config = uvicorn.Config(create_app(runtime, settings), host=settings.host,
                                port=settings.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.runtime.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path):
    """Module-scoped: starting llama.cpp contexts is cheap, but not free."""
    home = tmp_path_factory.mktemp("server")
    settings = Settings(host="127.0.0.1", port=_free_port(), models_dir=home / "models",
                        history_file=home / "history")
    runtime = LocalRuntime(settings)
    runtime.create("tiny", f"FROM {tiny_gguf}\n", home)
    live = LiveServer(runtime, settings).start()
    yield live
    live.stop()
