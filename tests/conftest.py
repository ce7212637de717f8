"""Fixtures shared by the whole suite.

``tests/`` goes on sys.path so any test can ``from tinymodel import write_tiny_gguf``
(and ``from runtimes import local_runtime``).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from runtimes import local_runtime  # noqa: E402
from tinymodel import write_tiny_gguf  # noqa: E402


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
