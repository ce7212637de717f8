from pathlib import Path

import pytest

from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store.modelfile import parse_modelfile


@pytest.fixture
def runtime(tmp_path: Path, tiny_gguf: Path):
    """A runtime over an empty store holding one model, ``tiny``, made from the fixture."""
    rt = LocalRuntime(Settings(models_dir=tmp_path / "models", history_file=tmp_path / "h"))
    rt.create("tiny", parse_modelfile(f"FROM {tiny_gguf}\n"), tmp_path)
    yield rt
    rt.close()
