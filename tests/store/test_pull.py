"""Pulling from an Ollama registry (a local fake that speaks the same protocol)."""

from __future__ import annotations

import pytest

from fakeregistry import leftovers, model_digest
from locallama.errors import ModelNotFound, PullError
from locallama.runtime.local import LocalRuntime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings


def test_a_pull_stores_the_model_with_its_layers_and_it_runs(runtime, registry, tiny_gguf):
    events = []
    runtime.pull("tiny", progress=events.append)
    record = runtime.store.get("tiny")
    assert record.params == {"temperature": 0.2} and record.template == "{{ .Prompt }}"
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    digest = model_digest(registry, tiny_gguf)
    done = [e for e in events if e.digest == digest and e.completed == e.total]
    assert done and done[-1].total == tiny_gguf.stat().st_size
    chunks = list(runtime.generate(GenerateRequest("tiny", "hi", options={"num_predict": 2})))
    assert chunks[-1].done and chunks[-1].eval_count == 2
    assert not [n for n in leftovers(runtime) if "partial" in n]


def test_blobs_the_store_has_are_not_downloaded_again(runtime, registry, tiny_gguf):
    runtime.pull("tiny")
    runtime.delete("tiny")  # the model blob goes too; the small layers as well
    runtime.pull("tiny")
    digest = model_digest(registry, tiny_gguf)
    runtime.copy("tiny", "kept")
    runtime.pull("tiny")
    assert len(registry.blob_gets(digest)) == 2  # the third pull found everything


def test_an_unknown_name_is_a_clear_not_found(runtime):
    with pytest.raises(ModelNotFound, match="'nothing:latest' not found; the registry"):
        runtime.pull("nothing")


def test_a_manifest_that_points_outside_the_store_is_refused(runtime, registry):
    registry.manifests["library/evil:latest"] = (
        b'{"schemaVersion": 2, "config": {"digest": "sha256:../../../etc/passwd", '
        b'"size": 1}, "layers": []}')
    with pytest.raises(PullError, match="not a valid manifest"):
        runtime.pull("evil")
    assert not runtime.store.exists("evil") and leftovers(runtime) == []
    assert not [p for p, _ in registry.requests if "/blobs/" in p]


def test_a_blob_that_is_not_a_model_is_refused(runtime, registry, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    registry.add_model("library/junk:latest", junk)
    with pytest.raises(PullError, match="not a usable model"):
        runtime.pull("junk")
    assert not runtime.store.exists("junk")


def test_no_registry_is_a_one_line_error(tmp_path):
    rt = LocalRuntime(Settings(models_dir=tmp_path / "m", history_file=tmp_path / "h",
                               registry="http://127.0.0.1:9"))
    with pytest.raises(PullError, match="cannot reach the registry at http://127.0.0.1:9"):
        rt.pull("tiny")


def test_a_url_pull_stores_the_file_as_a_model_named_after_it(runtime, registry, tiny_gguf):
    url = registry.add_file("Tiny-Model.Q8_0.gguf", tiny_gguf.read_bytes())
    registry.cut_after["Tiny-Model.Q8_0.gguf"] = 100_000
    events = []
    runtime.pull(url, progress=events.append)
    assert "stored as tiny-model.q8_0:latest" in [e.status for e in events]
    assert registry.blob_gets("Tiny-Model.Q8_0.gguf") == []  # not a /blobs/ path
    ranges = [r for p, r in registry.requests if p.startswith("/files/")]
    assert ranges == [None, "bytes=100000-"]  # the cut download resumed
    record = runtime.store.get("tiny-model.q8_0")
    assert record.model_path.read_bytes() == tiny_gguf.read_bytes()
    assert list(runtime.generate(GenerateRequest("tiny-model.q8_0", "hi",
                                                 options={"num_predict": 1})))[-1].done
    assert not [n for n in leftovers(runtime) if "partial" in n]


def test_a_url_that_is_not_a_model_leaves_nothing(runtime, registry):
    url = registry.add_file("notes.gguf", b"just some text, not a model")
    with pytest.raises(PullError, match="not a usable model"):
        runtime.pull(url)
    assert runtime.list() == [] and leftovers(runtime) == []
    with pytest.raises(PullError, match="answered 404"):
        runtime.pull(f"{registry.url}/files/missing.gguf")


@pytest.fixture
def hf(tmp_path, registry, make_gguf):
    """A Hugging Face repository with three quantizations of one fixture model."""
    import gguf

    types = {"Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "F16": gguf.LlamaFileType.MOSTLY_F16}
    files = {f"tiny.{q}.gguf": make_gguf(f"tiny-{q}.gguf", file_type=t).read_bytes()
             for q, t in types.items()}
    registry.add_hf_repo("someone/Tiny-GGUF", files)
    rt = LocalRuntime(Settings(models_dir=tmp_path / "hfstore", history_file=tmp_path / "h",
                               registry=registry.url, hf_endpoint=registry.url))
    yield rt, files
    rt.close()


def test_an_hf_pull_takes_the_named_quantization_case_insensitively(hf):
    runtime, files = hf
    events = []
    runtime.pull("hf.co/someone/Tiny-GGUF:q8_0", progress=events.append)
    record = runtime.store.get("hf.co/someone/Tiny-GGUF:q8_0")
    assert record.model_path.read_bytes() == files["tiny.Q8_0.gguf"]
    assert any(e.status == "using tiny.Q8_0.gguf (Q8_0 as asked)" for e in events)
    assert list(runtime.generate(GenerateRequest("hf.co/someone/Tiny-GGUF:q8_0", "hi",
                                                 options={"num_predict": 1})))[-1].done


def test_an_hf_pull_without_a_tag_picks_the_best_that_fits_and_says_why(hf, monkeypatch):
    runtime, files = hf
    from locallama.store import sources

    sizes = {name: len(data) for name, data in files.items()}
    # room for the Q8_0 file but not the F16 one
    monkeypatch.setattr(sources, "_available_memory",
                        lambda: int(sizes["tiny.Q8_0.gguf"] * 1.2) + 10)
    events = []
    runtime.pull("hf.co/someone/Tiny-GGUF", progress=events.append)
    [why] = [e.status for e in events if e.status.startswith("using ")]
    assert why.startswith("using tiny.Q8_0.gguf (Q8_0: the best quantization here that fits")
    assert runtime.store.get("hf.co/someone/Tiny-GGUF").model_path.read_bytes() == \
        files["tiny.Q8_0.gguf"]


def test_hf_errors_are_one_line(hf, monkeypatch):
    runtime, _ = hf
    from locallama.store import sources

    monkeypatch.setattr(sources, "_available_memory", lambda: 1000)
    with pytest.raises(PullError, match="no file in the repository fits in 1 KB .* Q4_0, needs"):
        runtime.pull("hf.co/someone/Tiny-GGUF")
    with pytest.raises(ModelNotFound, match="has no Q2_K file; it has: F16, Q4_0, Q8_0"):
        runtime.pull("hf.co/someone/Tiny-GGUF:Q2_K")
    with pytest.raises(ModelNotFound, match="no such repository"):
        runtime.pull("hf.co/someone/Nothing")
    assert runtime.list() == []


def test_api_pull_streams_ollama_progress_objects(runtime, registry, tiny_gguf):
    """Through the server: the objects the ollama client reads, then success."""
    import json

    import httpx

    from liveserver import serve

    digest = model_digest(registry, tiny_gguf)
    registry.delay = 0.002  # several progress lines for one blob
    with serve(runtime) as url:
        with httpx.stream("POST", url + "/api/pull", json={"model": "tiny"}) as r:
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert r.status_code == 200
        assert lines[0] == {"status": "pulling manifest"}
        blob = [x for x in lines if x.get("digest") == digest]
        assert blob and all(x["total"] == tiny_gguf.stat().st_size for x in blob)
        assert blob[-1]["completed"] == blob[-1]["total"]
        assert lines[-1] == {"status": "success"}
        r = httpx.post(url + "/api/pull", json={"model": "no-such-model", "stream": False})
        assert r.status_code == 404 and "no-such-model" in r.json()["error"]
        assert httpx.post(url + "/api/generate", json={
            "model": "tiny", "prompt": "Hi", "stream": False,
            "options": {"num_predict": 2}}).json()["done"]
