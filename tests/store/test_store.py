"""The store: Ollama's layout, atomic writes, copy and delete (blobs: test_blobs.py)."""

import json
import os
from pathlib import Path

import pytest

from locallama.errors import BadModelFile, ModelNotFound, StorageError
from locallama.store import Store, parse_name
from locallama.store import manifests as mf
from locallama.store.blobs import digest_bytes


def _model(store: Store, name: str, payload: bytes = b"GGUF-ish", template: str | None = None):
    layers = [mf.Layer(mf.MEDIA_MODEL, *store.blobs.add_bytes(payload))]
    if template:
        layers.append(mf.Layer(mf.MEDIA_TEMPLATE, *store.blobs.add_bytes(template.encode())))
    layers.append(mf.Layer(mf.MEDIA_PARAMS, *store.add_json_blob({"stop": ["x"], "top_k": 5})))
    config = mf.Layer(mf.CONFIG_MEDIA_TYPE, *store.add_json_blob({"model_format": "gguf"}))
    store.write_manifest(parse_name(name), mf.Manifest(config, tuple(layers)))


def test_layout_is_ollamas(tmp_path):
    store = Store(tmp_path)
    _model(store, "me/thing:v1", template="{{ .Prompt }}")
    manifest = tmp_path / "manifests/registry.ollama.ai/me/thing/v1"
    doc = json.loads(manifest.read_text())
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["layers"][0]["mediaType"] == "application/vnd.ollama.image.model"
    for layer in [doc["config"], *doc["layers"]]:
        blob = tmp_path / "blobs" / layer["digest"].replace(":", "-")
        assert digest_bytes(blob.read_bytes()) == layer["digest"]
        assert blob.stat().st_size == layer["size"]


def test_reads_a_folder_written_by_ollama(tmp_path):
    """A hand-made Ollama folder (as Ollama writes it) lists and resolves."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    data = {}
    for key, content in {"model": b"weights", "config": b'{"model_format":"gguf"}',
                         "template": b"{{ .Prompt }}", "system": b"Be brief.",
                         "params": b'{"temperature":0.2,"stop":["</s>"]}'}.items():
        digest = digest_bytes(content)
        (blobs / digest.replace(":", "-")).write_bytes(content)
        data[key] = {"digest": digest, "size": len(content)}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   **data["config"]},
        "layers": [{"mediaType": f"application/vnd.ollama.image.{k}", **data[k]}
                   for k in ("model", "template", "system", "params")],
    }
    path = tmp_path / "manifests/registry.ollama.ai/library/tiny/latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest, indent=2))
    store = Store(tmp_path)
    [entry] = store.list()
    assert entry.name.display == "tiny:latest"
    record = store.get("tiny")
    assert record.template == "{{ .Prompt }}"
    assert record.system == "Be brief."
    assert record.params == {"temperature": 0.2, "stop": ["</s>"]}
    assert record.model_path.read_bytes() == b"weights"
    assert record.id == digest_bytes(path.read_bytes())[7:19]


def test_lookup_ignores_case(tmp_path):
    store = Store(tmp_path)
    _model(store, "Thing:Big")
    assert store.get("thing:big").name.display == "thing:big"


def test_copy_shares_blobs_and_delete_keeps_shared_ones(tmp_path):
    store = Store(tmp_path)
    _model(store, "a:1", payload=b"shared weights")
    store.copy("a:1", "b:1")
    before = store.blobs.digests()
    store.delete("a:1")
    assert store.blobs.digests() == before  # b:1 still uses them all
    assert not store.exists("a:1")
    store.delete("b:1")
    assert store.blobs.digests() == set()
    assert not (tmp_path / "manifests/registry.ollama.ai/library").exists()


def test_delete_keeps_blobs_other_models_use(tmp_path):
    store = Store(tmp_path)
    _model(store, "a:1", payload=b"one")
    _model(store, "b:1", payload=b"two")
    store.delete("a:1")
    assert store.blobs.has(digest_bytes(b"two"))
    assert not store.blobs.has(digest_bytes(b"one"))
    assert store.get("b:1").model_path.read_bytes() == b"two"


def test_missing_model_errors(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(ModelNotFound, match="nothere:latest"):
        store.get("nothere")
    with pytest.raises(ModelNotFound):
        store.delete("nothere")
    with pytest.raises(ModelNotFound):
        store.copy("nothere", "x")


def test_manifest_naming_a_path_outside_the_store_is_refused(tmp_path):
    path = tmp_path / "manifests/registry.ollama.ai/library/evil/latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "schemaVersion": 2,
        "config": {"digest": "sha256:../../../../etc/passwd", "size": 1},
        "layers": [],
    }))
    store = Store(tmp_path)
    with pytest.raises(BadModelFile, match="not a valid manifest"):
        store.get("evil")
    [entry] = store.list()  # listed as broken, not crashed
    assert entry.name.display == "evil:latest" and "invalid digest" in entry.broken
    store.delete("evil")  # and removable, touching nothing outside the store
    assert store.list() == [] and not path.exists() and Path("/etc/passwd").is_file()


def test_manifest_needs_its_blobs(tmp_path):
    store = Store(tmp_path)
    missing = mf.Layer(mf.MEDIA_MODEL, "sha256:" + "1" * 64, 3)
    config = mf.Layer(mf.CONFIG_MEDIA_TYPE, *store.add_json_blob({}))
    with pytest.raises(BadModelFile, match="missing blob"):
        store.write_manifest(parse_name("m"), mf.Manifest(config, (missing,)))
    assert not store.exists("m")


def test_writes_are_atomic(tmp_path, monkeypatch):
    """A crash while replacing a manifest leaves the old one whole."""
    store = Store(tmp_path)
    _model(store, "m:1", payload=b"old")
    path = store.manifest_path(parse_name("m:1"))
    old = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError):  # typed: one line in the CLI, 500 on the faces
        _model(store, "m:1", payload=b"new")
    assert path.read_bytes() == old
    leftovers = [p for p in path.parent.iterdir() if p.name != "1"]
    assert leftovers == []
