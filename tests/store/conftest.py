"""Fixtures for the store tests: a fake registry and a runtime that pulls from it (pull,
download), and settings whose known places are all inside tmp_path (import)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeregistry import FakeRegistry, fake_registry
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store import Store
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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """For the import tests: known places inside tmp_path, so no test ever sees the
    user's own models."""
    return Settings(models_dir=tmp_path / "models", history_file=tmp_path / "history",
                    ollama_models=tmp_path / "ollama", hf_hub_cache=tmp_path / "hub",
                    lmstudio_models=(tmp_path / "lms",))


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.models_dir)
