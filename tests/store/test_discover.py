"""Finding the models other tools keep, and naming them (store/discover.py): Ollama
stores, the Hugging Face cache, LM Studio's folders, files and folders given by path."""

import os
import time
from pathlib import Path

import pytest

from importhelpers import adopt_all, gguf_at, ollama_store
from locallama.errors import InvalidModelName, InvalidRequest
from locallama.settings import Settings
from locallama.store import Store, discover, parse_name
from locallama.store.create import create_model
from locallama.store.modelfile import parse_modelfile


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
    """A file as huggingface_hub caches it: a snapshot symlink to a blob (one blob per
    revision and file, so a test can tell which revision was taken)."""
    blob = gguf_at(repo_dir / "blobs" / f"blob-{revision}-{filename}", **kwargs)
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


def test_the_known_places_are_read_ollama_then_hugging_face_then_lm_studio(tmp_path, tiny_gguf):
    settings = Settings(models_dir=tmp_path / "models", history_file=tmp_path / "history",
                        ollama_models=tmp_path / "ollama", hf_hub_cache=tmp_path / "hub",
                        lmstudio_models=(tmp_path / "lms-b", tmp_path / "lms-a"))
    gguf_at(tmp_path / "lms-a" / "aa" / "Repo" / "A-Q8_0.gguf")
    gguf_at(tmp_path / "lms-b" / "bb" / "Repo" / "B-Q8_0.gguf", seed=1)
    _hf_file(settings.hf_hub_cache / "models--zz--Repo", "r", "Z-Q8_0.gguf", seed=2)
    ollama_store(settings.ollama_models, tiny_gguf)

    assert [kind for kind, _ in discover.known_places(settings)] == [
        "ollama", "huggingface", "lmstudio", "lmstudio"]
    assert [(c.kind, c.name.display) for c in discover.discover(Store(settings.models_dir),
                                                                 settings)] == [
        ("ollama", "me/helper:v1"), ("ollama", "tiny:latest"),
        ("huggingface", "hf.co/zz/Repo:Q8_0"),
        ("lmstudio", "hf.co/bb/Repo:Q8_0"),  # LM Studio folders in the order given
        ("lmstudio", "hf.co/aa/Repo:Q8_0"),
    ]


def test_a_cache_repository_given_by_path_takes_its_newest_snapshot(store, settings):
    hub = settings.hf_hub_cache
    repo = hub / "models--bartowski--Tiny-GGUF"
    _hf_file(repo, "old", "Tiny-Q4_K_M.gguf")
    new = _hf_file(repo, "new", "Tiny-Q4_K_M.gguf", seed=1)
    an_hour_ago = time.time() - 3600
    os.utime(repo / "snapshots" / "old", (an_hour_ago, an_hour_ago))
    _hf_file(hub / "models--no-owner", "r", "x.gguf", seed=2)  # not OWNER--REPO: nothing

    for path in (repo, hub):  # one repository's folder, or the cache holding it
        candidates = discover.scan(store, path)
        assert [(c.kind, c.name.display) for c in candidates] == [
            ("huggingface", "hf.co/bartowski/Tiny-GGUF:Q4_K_M")], path
        assert os.path.samefile(candidates[0].path, new)  # no refs/main: the newest
        assert candidates[0].size == new.stat().st_size and not candidates[0].in_store


def test_files_of_one_quantization_in_a_repository_are_told_apart_by_their_stems(
        store, settings):
    repo = settings.lmstudio_models[0] / "someone" / "Quants"
    gguf_at(repo / "base-Q4_K_M.gguf")
    gguf_at(repo / "instruct-Q4_K_M.gguf", seed=1)
    gguf_at(repo / "instruct-Q8_0.gguf", seed=2)
    gguf_at(repo / "notes" / "extra.gguf", seed=3)

    assert [c.name.display for c in discover.discover(store, settings)] == [
        "hf.co/someone/Quants:base-Q4_K_M",  # two files of Q4_K_M: their stems
        "hf.co/someone/Quants:instruct-Q4_K_M",
        "hf.co/someone/Quants:Q8_0",  # the only Q8_0 keeps the quantization
        "hf.co/someone/Quants:extra",  # no quantization in the name: the stem
    ]


def test_a_folder_that_cannot_be_part_of_a_name_is_skipped_with_a_warning(store, settings):
    root = settings.lmstudio_models[0]
    bad = gguf_at(root / "my.org" / "Tiny-GGUF" / "Tiny-Q4_K_M.gguf")  # no dots in a namespace
    gguf_at(root / "good" / "Tiny-GGUF" / "Tiny-Q4_K_M.gguf", seed=1)
    warnings = []

    candidates = discover.discover(store, settings, warnings.append)
    assert [c.name.display for c in candidates] == ["hf.co/good/Tiny-GGUF:Q4_K_M"]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping {bad}: ")
    assert "namespace" in warnings[0]


def test_a_folder_is_listed_in_walk_order_and_equal_stems_share_a_name(tmp_path, store):
    folder = tmp_path / "downloads"
    inner = gguf_at(folder / "a" / "z.gguf")
    outer = gguf_at(folder / "z.gguf", seed=1)
    other = gguf_at(folder / "b.gguf", seed=2)
    last = gguf_at(folder / "c" / "a.gguf", seed=3)

    candidates = discover.scan(store, folder)
    assert [(c.path, c.name.display) for c in candidates] == [
        (other, "b:latest"), (outer, "z:latest"),  # a folder's own files first, sorted
        (inner, "z:latest"), (last, "a:latest")]  # then its folders', sorted
    assert [(c.kind, c.in_store) for c in candidates] == [("file", False)] * 4


def test_a_split_model_is_left_out_with_one_warning(tmp_path, store):
    folder = tmp_path / "big"
    first = gguf_at(folder / "big-00001-of-00002.gguf")
    gguf_at(folder / "big-00002-of-00002.gguf", seed=1)
    gguf_at(folder / "mmproj-big-f16.gguf", seed=2)  # a vision projector: left out quietly
    gguf_at(folder / "whole.gguf", seed=3)
    warnings = []

    assert [c.name.display for c in discover.scan(store, folder, warnings.append)] == [
        "whole:latest"]
    assert warnings == [f"skipping {first}: split GGUF files are not supported yet "
                        "(merge them with llama-gguf-split --merge)"]


def test_scan_refuses_a_missing_path_and_the_store_itself(tmp_path, store):
    with pytest.raises(InvalidRequest, match="no such file or folder"):
        discover.scan(store, tmp_path / "nowhere")
    (store.root / "manifests").mkdir(parents=True)
    (store.root / "blobs").mkdir()
    with pytest.raises(InvalidRequest, match="is the store itself"):
        discover.scan(store, store.root)


def test_an_ollama_manifest_that_does_not_parse_is_left_out(tmp_path, store, tiny_gguf):
    source = ollama_store(tmp_path / "elsewhere", tiny_gguf)
    source.manifest_path(parse_name("tiny")).write_text("{not json")
    helper = source.read_manifest(parse_name("me/helper:v1"))[0]
    source.blobs.path(helper.config.digest).unlink()  # a missing blob: adopting says so

    [candidate] = discover.scan(store, source.root)
    assert (candidate.kind, candidate.name.display) == ("ollama", "me/helper:v1")
    assert candidate.path == source.manifest_path(parse_name("me/helper:v1"))
    assert candidate.source_root == source.root
    assert candidate.size == sum(layer.size for layer in (helper.config, *helper.layers))


def test_with_name_renames_a_candidate_and_checks_the_store_again(tmp_path, store):
    file = gguf_at(tmp_path / "m-Q8_0.gguf")
    [found] = discover.scan(store, file)
    assert found.name.display == "m:q8_0"

    named = discover.with_name(store, found, "mine")
    assert (named.name.display, named.in_store) == ("mine:latest", False)
    assert (named.kind, named.path, named.size) == (found.kind, found.path, found.size)
    create_model(store, parse_name("mine"), parse_modelfile(f"FROM {file}\n"), tmp_path)
    assert discover.with_name(store, found, "mine").in_store
    with pytest.raises(InvalidModelName):
        discover.with_name(store, found, "../escape")


def test_the_quantization_is_read_between_separators():
    cases = {
        "Llama-Q4_K_M.gguf": "Q4_K_M",
        "llama.q8_0.GGUF": "Q8_0",
        "Q4_K_S-llama.gguf": "Q4_K_S",
        "phi_IQ4_XS.gguf": "IQ4_XS",
        "llamaq8_0.gguf": None,  # not between separators
        "model.gguf": None,
    }
    for filename, quant in cases.items():
        assert discover.quantization(filename) == quant, filename
