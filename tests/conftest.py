"""Fixtures shared by the whole suite.

``tests/`` goes on sys.path so any test can ``from tinymodel import write_tiny_gguf``
(and ``from runtimes import local_runtime``).
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from runtimes import local_runtime  # noqa: E402
from tinymodel import write_tiny_gguf  # noqa: E402

#: LOCALLAMA_ variables a developer may set to steer the whole suite; every other one
#: (a key, a host, a store of their own) is kept out of the tests.
_PASSED_THROUGH = ("LOCALLAMA_RUNNER", "LOCALLAMA_DEBUG")


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A loopback port held bound, not listening, for the whole session: a connection
    there is refused at once, and no server (another test's, another suite's on this
    machine) can start answering there, as one could on a port merely found free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
                 closed_port: int) -> Path:
    """Every test runs with its own LOCALLAMA_HOME (so history, models and recipes
    default into it, never ~/.locallama), LOCALLAMA_HOST at ``closed_port`` (a command
    that looks for a server finds none and runs in-process, never at 127.0.0.1:11434),
    no Ollama or LM Studio folder of the user's, and no other LOCALLAMA_ setting of the
    environment's.  Subprocesses inherit it.  Returns the home."""
    for key in list(os.environ):
        if key.startswith("LOCALLAMA_") and key not in _PASSED_THROUGH:
            monkeypatch.delenv(key)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LOCALLAMA_HOME", str(home / "locallama"))
    monkeypatch.setenv("LOCALLAMA_HOST", f"127.0.0.1:{closed_port}")
    monkeypatch.setenv("OLLAMA_MODELS", str(home / "ollama-models"))
    monkeypatch.setenv("LMSTUDIO_MODELS", str(home / "lmstudio-models"))
    return home


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny llama model (ChatML template) shared by every test; do not modify it."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    """A factory: ``make_gguf(name=None, **write_tiny_gguf_kwargs)`` -> a fresh model path."""
    counter = itertools.count()

    def make(name: str | None = None, **kwargs: object) -> Path:
        return write_tiny_gguf(tmp_path / (name or f"model-{next(counter)}.gguf"), **kwargs)

    return make


@pytest.fixture
def runtime(tmp_path: Path, tiny_gguf: Path) -> Iterator:
    """A LocalRuntime over an empty store holding one model, ``tiny``, made from the
    fixture (its store in ``tmp_path/models``)."""
    rt = local_runtime(tmp_path, ("tiny", tiny_gguf))
    yield rt
    rt.close()
