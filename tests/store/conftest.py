"""Fixtures for the pull and download tests: a fake registry and a store that pulls from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeregistry import FakeRegistry, fake_registry
from locallama.runtime.local import LocalRuntime
from runtimes import local_runtime


@pytest.fixture
def registry(tiny_gguf: Path) -> Iterator[FakeRegistry]:
    """A registry on 127.0.0.1 holding ``library/tiny:latest`` (with params and a template)."""
    with fake_registry() as fake:
        fake.add_model("library/tiny:latest", tiny_gguf, params={"temperature": 0.2},
                       template="{{ .Prompt }}")
        yield fake


@pytest.fixture
def runtime(tmp_path: Path, registry: FakeRegistry) -> Iterator[LocalRuntime]:
    """Here a LocalRuntime over an empty store that pulls from ``registry``."""
    rt = local_runtime(tmp_path, registry=registry.url)
    yield rt
    rt.close()
