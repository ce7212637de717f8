"""Finding the models other tools keep, and naming them (store/discover.py): Ollama
stores, the Hugging Face cache, LM Studio's folders, files and folders given by path."""

import os
from pathlib import Path

import pytest

from importhelpers import adopt_all, gguf_at, ollama_store
from locallama.settings import Settings
from locallama.store import Store, discover


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Known places inside tmp_path, so no test ever sees the user's own models."""
    return Settings(models_dir=tmp_path / "models", history_file=tmp_path / "history",
                    ollama_models=tmp_path / "ollama", hf_hub_cache=tmp_path / "hub",
                    lmstudio_models=(tmp_path / "lms",))


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.models_dir)


def test_names_of_plain_files():
    cases = {
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf": "llama-3.2-1b-instruct:q4_k_m",
        "qwen2.5-0.5b-instruct-q8_0.gguf": "qwen2.5-0.5b-instruct:q8_0",
        "model.gguf": "model:latest",
        "Q4_K_M.gguf": "q4_k_m:q4_k_m",
        "My Model (v2)...gguf": "my-model-v2:latest",
        "..evil.. name.gguf": "evil.-name:latest",
        "日本語.gguf": "model:latest",
    }
    for filename, name in cases.items():
        assert discover.file_model_name(Path(filename)).display == name, filename


def _hf_file(repo_dir: Path, revision: str, filename: str, **kwargs) -> Path:
    """A file as huggingface_hub caches it: a snapshot symlink to a blob."""
    blob = gguf_at(repo_dir / "blobs" / f"blob-{filename}", **kwargs)
    link = repo_dir / "snapshots" / revision / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    return blob


def test_hugging_face_cache_files_are_named_like_hf_pulls(store, settings):
    repo = settings.hf_hub_cache / "models--bartowski--Tiny-GGUF"
    q4 = _hf_file(repo, "rev1", "Tiny-Q4_K_M.gguf")
    _hf_file(repo, "rev2", "Tiny-Q8_0.gguf", seed=1)
    _hf_file(repo, "rev2", "Tiny-Q4_K_M.gguf", seed=2)  # an older revision of the file
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev1")
    _hf_file(settings.hf_hub_cache / "models--someone--Other", "r", "other.gguf", seed=3)
    (settings.hf_hub_cache / "datasets--x--y").mkdir()

    candidates = discover.discover(store, settings)
    assert [(c.kind, c.name.display) for c in candidates] == [
        ("huggingface", "hf.co/bartowski/Tiny-GGUF:Q4_K_M"),
        ("huggingface", "hf.co/bartowski/Tiny-GGUF:Q8_0"),
        ("huggingface", "hf.co/someone/Other:latest"),
    ]
    assert os.path.samefile(candidates[0].path, q4)  # the current revision's file
    adopt_all(store, candidates)
    record = store.get("hf.co/bartowski/Tiny-GGUF:q4_k_m")
    assert record.model_path.stat().st_ino == q4.stat().st_ino  # linked to the cache's blob
    assert not record.model_path.is_symlink()


def test_lm_studio_folders_are_named_after_the_repository(store, settings):
    root = settings.lmstudio_models[0]
    gguf_at(root / "lmstudio-community" / "Tiny-GGUF" / "Tiny-Q4_K_M.gguf")
    several = root / "someone" / "Mixed"
    gguf_at(several / "first.gguf", seed=1)
    gguf_at(several / "second.gguf", seed=2)
    gguf_at(several / "mmproj-f16.gguf", seed=3)  # a vision projector: not a model

    candidates = discover.discover(store, settings)
    assert [(c.kind, c.name.display) for c in candidates] == [
        ("lmstudio", "hf.co/lmstudio-community/Tiny-GGUF:Q4_K_M"),
        ("lmstudio", "hf.co/someone/Mixed:first"),
        ("lmstudio", "hf.co/someone/Mixed:second"),
    ]
    adopt_all(store, candidates)
    assert [c.in_store for c in discover.discover(store, settings)] == [True, True, True]


def test_discover_reads_an_ollama_store_but_never_our_own(tmp_path, settings, tiny_gguf):
    ollama_store(settings.ollama_models, tiny_gguf)
    assert len(discover.discover(Store(settings.models_dir), settings)) == 2
    assert discover.discover(Store(settings.ollama_models), settings) == []


def test_known_places_come_from_the_environment(tmp_path):
    settings = Settings.from_env({"OLLAMA_MODELS": str(tmp_path / "o"),
                                  "HF_HOME": str(tmp_path / "hf"),
                                  "LMSTUDIO_MODELS": str(tmp_path / "lm")})
    assert settings.ollama_models == tmp_path / "o"
    assert settings.hf_hub_cache == tmp_path / "hf" / "hub"
    assert settings.lmstudio_models == (tmp_path / "lm",)
    assert Settings.from_env({"HF_HUB_CACHE": "/x/hub", "HF_HOME": "/y"}).hf_hub_cache == Path(
        "/x/hub")
    defaults = Settings.from_env({})
    assert defaults.ollama_models == Path.home() / ".ollama" / "models"
    assert Path.home() / ".lmstudio" / "models" in defaults.lmstudio_models
