"""Adopting models the user already has (store/importer.py): Ollama models and GGUF
files linked into the store, never copied; same model, different model, --force."""

import errno
import os

import pytest

from importhelpers import adopt_all, gguf_at, ollama_store
from locallama.errors import BadModelFile, NotSupported
from locallama.settings import Settings
from locallama.store import Store, discover, importer, parse_name
from locallama.store import manifests as mf
from tinymodel import Q4_0, Q8_0


def blob_files(store: Store) -> list[str]:
    """Every entry of the blob folder, leftovers (.partial) included."""
    root = store.blobs.root
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_import_from_an_ollama_folder_links_every_blob(tmp_path, store, tiny_gguf):
    source = ollama_store(tmp_path / "elsewhere", tiny_gguf)
    candidates = discover.scan(store, tmp_path / "elsewhere")
    assert [(c.kind, c.name.display) for c in candidates] == [
        ("ollama", "me/helper:v1"), ("ollama", "tiny:latest")]
    assert not any(c.in_store for c in candidates)

    results = adopt_all(store, candidates)
    assert [r.status for r in results] == ["imported", "imported"]
    assert "hard link" in results[0].detail
    assert {e.name.display for e in store.list()} == {"me/helper:v1", "tiny:latest"}
    for entry in source.list():
        manifest, _, _ = source.read_manifest(entry.name)
        assert store.read_manifest(entry.name)[0] == manifest  # names and layers kept
        for digest in manifest.digests():  # the same bytes on disk: no copy
            ours, theirs = store.blobs.path(digest).stat(), source.blobs.path(digest).stat()
            assert (ours.st_ino, ours.st_dev) == (theirs.st_ino, theirs.st_dev)
            assert ours.st_nlink == 2
    record = store.get("me/helper:v1")
    assert record.system == "Answer briefly." and record.params == {"temperature": 0.2}
    assert record.model_path.read_bytes()[:4] == b"GGUF"


def test_an_imported_ollama_model_runs(tmp_path, tiny_gguf):
    from locallama.runtime.base import GenerateRequest
    from locallama.runtime.local import LocalRuntime

    ollama_store(tmp_path / "elsewhere", tiny_gguf)
    runtime = LocalRuntime(Settings(models_dir=tmp_path / "models", history_file=tmp_path / "h",
                                    num_parallel=1))
    try:
        adopt_all(runtime.store, discover.scan(runtime.store, tmp_path / "elsewhere"))
        chunks = list(runtime.generate(GenerateRequest(
            "me/helper:v1", "Hello", options={"num_predict": 3, "seed": 1})))
        assert chunks[-1].done and chunks[-1].eval_count >= 1
    finally:
        runtime.close()


def test_import_a_folder_of_gguf_files(tmp_path, store):
    folder = tmp_path / "downloads"
    gguf_at(folder.joinpath("Tiny-Model-Q8_0.gguf"), file_type=Q8_0)
    gguf_at(folder / "plain.gguf", seed=1)
    (folder / "nested").mkdir()
    gguf_at(folder / "nested" / "My Other.q4_0.GGUF", file_type=Q4_0, seed=2)
    (folder / "notes.txt").write_text("not a model")
    gguf_at(folder / ".hidden.gguf", seed=3)

    candidates = discover.scan(store, folder)
    assert sorted((c.kind, c.name.display) for c in candidates) == [
        ("file", "my-other:q4_0"), ("file", "plain:latest"), ("file", "tiny-model:q8_0")]
    results = adopt_all(store, candidates)
    assert {r.status for r in results} == {"imported"}
    assert {r.detail for r in results} == {"hard link"}
    for candidate in candidates:
        record = store.get(candidate.name)
        assert os.path.samefile(record.model_path, candidate.path)
        assert record.config["model_format"] == "gguf"
    assert store.get("tiny-model:q8_0").config["file_type"] == "Q8_0"


def test_a_malformed_gguf_is_refused_and_leaves_nothing(tmp_path, store):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    [candidate] = discover.scan(store, bad)
    with pytest.raises(BadModelFile, match="bad.gguf"):
        importer.adopt(store, candidate)
    assert store.list() == []
    assert blob_files(store) == []
    assert bad.read_bytes() == b"GGUF" + b"\xff" * 60


def test_split_files_are_refused(tmp_path, store):
    part = gguf_at(tmp_path / "big-00001-of-00002.gguf")
    warnings = []
    assert discover.scan(store, tmp_path, warnings.append) == []
    assert "split" in warnings[0]
    with pytest.raises(NotSupported, match="split"):
        importer.adopt(store, discover.scan(store, part)[0])


def test_importing_twice_writes_nothing(tmp_path, store, tiny_gguf):
    folder = tmp_path / "files"
    gguf_at(folder / "one.gguf")
    ollama_store(tmp_path / "elsewhere", tiny_gguf)
    candidates = discover.scan(store, folder) + discover.scan(store, tmp_path / "elsewhere")
    adopt_all(store, candidates)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes())
              for p in store.root.rglob("*") if p.is_file()}

    again = discover.scan(store, folder) + discover.scan(store, tmp_path / "elsewhere")
    assert all(c.in_store for c in again)
    results = adopt_all(store, again)
    assert [r.status for r in results] == ["present"] * 3
    assert "already in the store" in results[0].message()
    after = {p: (p.stat().st_mtime_ns, p.read_bytes())
             for p in store.root.rglob("*") if p.is_file()}
    assert after == before


def test_a_copy_of_a_stored_model_is_present_too(tmp_path, store):
    """Same bytes in another file: hashed, found equal, nothing written."""
    original = gguf_at(tmp_path / "a" / "m.gguf")
    importer.adopt(store, discover.scan(store, original)[0])
    copy = tmp_path / "b" / "m.gguf"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    result = importer.adopt(store, discover.scan(store, copy)[0])
    assert result.status == "present"
    assert copy.stat().st_nlink == 1 and all(
        not name.endswith(".partial") for name in blob_files(store))


def test_removing_an_imported_model_keeps_the_users_file(tmp_path, store):
    original = gguf_at(tmp_path / "keep" / "mine.gguf")
    data = original.read_bytes()
    [result] = adopt_all(store, discover.scan(store, original))
    assert original.stat().st_nlink == 2
    store.delete(result.name)
    assert original.read_bytes() == data and original.stat().st_nlink == 1
    assert store.blobs.digests() == set()


def test_symlink_when_a_hard_link_is_impossible(tmp_path, store, monkeypatch):
    original = gguf_at(tmp_path / "other-disk" / "far.gguf")
    data = original.read_bytes()

    def cross_device(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(importer.os, "link", cross_device)
    events = []
    [result] = [importer.adopt(store, c, events.append)
                for c in discover.scan(store, tmp_path / "other-disk")]
    assert (result.status, result.detail) == ("imported", "symlink")
    record = store.get("far")
    assert record.model_path.is_symlink()
    assert record.model_path.resolve() == original.resolve()
    digest = record.manifest.first(mf.MEDIA_MODEL).digest
    assert store.blobs.has(digest) and store.blobs.verify(digest)
    assert store.blobs.size(digest) == len(data)
    hashing = [e for e in events if e.total]
    assert hashing and hashing[-1].completed == hashing[-1].total == len(data)

    store.delete("far")  # the link goes; the file stays
    assert not record.model_path.is_symlink() and not record.model_path.exists()
    assert original.read_bytes() == data


def test_no_copy_when_no_link_is_possible(tmp_path, store, monkeypatch):
    original = gguf_at(tmp_path / "m.gguf")

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(importer.os, "link", refuse)
    monkeypatch.setattr(importer.os, "symlink", refuse)
    with pytest.raises(NotSupported, match="never copies"):
        importer.adopt(store, discover.scan(store, original)[0])
    assert store.list() == [] and blob_files(store) == []


def test_a_name_clash_is_skipped_unless_forced(tmp_path, store):
    first = gguf_at(tmp_path / "first.gguf")
    second = gguf_at(tmp_path / "second.gguf", seed=7)
    importer.adopt(store, discover.with_name(store, discover.scan(store, first)[0], "pick"))
    old_digest = store.get("pick").manifest.first(mf.MEDIA_MODEL).digest

    clash = discover.with_name(store, discover.scan(store, second)[0], "pick")
    assert clash.in_store
    result = importer.adopt(store, clash)
    assert result.status == "skipped" and "--force" in result.detail
    assert store.get("pick").manifest.first(mf.MEDIA_MODEL).digest == old_digest
    assert not any(name.endswith(".partial") for name in blob_files(store))

    assert importer.adopt(store, clash, force=True).status == "imported"
    assert os.path.samefile(store.get("pick").model_path, second)
    assert not store.blobs.has(old_digest)  # the replaced weights' link is gone
    assert first.is_file()


def test_an_ollama_model_with_a_missing_blob_is_skipped(tmp_path, store, tiny_gguf):
    source = ollama_store(tmp_path / "elsewhere", tiny_gguf)
    helper = source.read_manifest(parse_name("me/helper:v1"))[0]
    system = helper.first(mf.MEDIA_SYSTEM).digest
    source.blobs.path(system).unlink()
    results = {r.name.display: r for r in adopt_all(store, discover.scan(store, source.root))}
    assert results["me/helper:v1"].status == "skipped"
    assert "missing" in results["me/helper:v1"].detail
    assert results["tiny:latest"].status == "imported"
    assert [e.name.display for e in store.list()] == ["tiny:latest"]
