"""Helpers for the chat page's browser tests (tests/web): a live ``locallama serve``
on tiny models, the browser's path and flags, the hostile string, screenshots.
(Apart from conftest.py so tests and bench scripts import them by a unique name.)

"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from liveserver import free_port
from locallama.cli.common import server_answers
from runtimes import local_runtime
from thinkers import THINKING_TEMPLATE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOCALLAMA = str(Path(sys.executable).with_name("locallama"))
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
START_TIMEOUT_S = 30
#: what a page must render as text, never run
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
#: the default models: name -> Modelfile lines after FROM (the tiny GGUF)
DEFAULT_MODELS: dict[str, str] = {
    "tiny": "PARAMETER num_predict 48\n",
    "thinker": f'TEMPLATE """{THINKING_TEMPLATE}"""\nPARAMETER num_predict 48\n',
    "hostile": f'SYSTEM """{HOSTILE}"""\nLICENSE """{HOSTILE}"""\n',
}


@dataclass
class UiServer:
    """A ``locallama serve`` subprocess; ``url`` is its base URL (no trailing slash)."""

    url: str
    proc: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def page_url(self) -> str:
        return self.url + "/ui/"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def __enter__(self) -> UiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ui_server(tmp: Path, gguf: Path, models: dict[str, str] | None = None,
                    **env: str) -> UiServer:
    """Make ``models`` (name -> Modelfile lines) from ``gguf`` in ``tmp/models`` and
    start ``locallama serve`` over them; ``env`` adds LOCALLAMA_* settings."""
    models = DEFAULT_MODELS if models is None else models
    runtime = local_runtime(tmp, *((name, gguf, lines) for name, lines in models.items()))
    runtime.close()
    port = free_port()
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
    server_env.update(LOCALLAMA_HOST=f"127.0.0.1:{port}", LOCALLAMA_MODELS=str(tmp / "models"),
                      LOCALLAMA_HOME=str(tmp / "home"), **env)
    log = tmp / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([LOCALLAMA, "serve"], env=server_env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    server = UiServer(f"http://127.0.0.1:{port}", proc, log, server_env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server_answers("127.0.0.1", port, timeout=1):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"serve did not answer: {log.read_text()}")
        time.sleep(0.1)
    return server


def screenshot(page, name: str) -> Path:
    """Take the page's screenshot: as ``docs/<name>.png`` (the README shows these) when
    LOCALLAMA_UPDATE_SCREENSHOTS=1, else into a temporary folder, so that a test run
    leaves the checkout as it was."""
    import os
    import tempfile

    if os.environ.get("LOCALLAMA_UPDATE_SCREENSHOTS") == "1":
        folder = DOCS
    else:
        folder = Path(tempfile.gettempdir()) / "locallama-screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 1000  # a real picture, not an empty file
    return path
