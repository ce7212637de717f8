"""A locallama server on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from locallama.runtime.base import Runtime
from locallama.server.app import UVICORN_OPTIONS, create_app
from locallama.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(runtime: Runtime, settings: Settings | None = None, *, api_key: str | None = None,
          tmp: Path = Path("/nonexistent")) -> Iterator[str]:
    """Serve ``runtime`` until the block ends; yields the base URL."""
    if settings is None:
        settings = Settings(host="127.0.0.1", port=free_port(), models_dir=tmp / "models",
                            history_file=tmp / "history", api_key=api_key)
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, settings), host=settings.host,
                                           port=settings.port, log_level="warning",
                                           **UVICORN_OPTIONS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield settings.base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
