"""Store faults seen through the server: a kill mid-upload, a full disk, broken manifests."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from fakeregistry import fake_registry
from faulthelpers import WAIT_S, store_files, tmpfs, wait_for
from liveserver import free_port, serve
from locallama.cli.common import server_answers
from locallama.client import RemoteRuntime
from locallama.errors import StorageFull
from locallama.runtime.local import LocalRuntime
from locallama.server.http_errors import error_response
from locallama.settings import Settings
from locallama.store import blobs as blobs_module
from runtimes import local_runtime

LOCALLAMA = str(Path(sys.executable).with_name("locallama"))


class _Serve:
    """A real ``locallama serve`` process on a temporary store."""

    def __init__(self, tmp_path: Path, models: Path, registry: str, log_name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
        env.update(LOCALLAMA_HOST=f"127.0.0.1:{self.port}", LOCALLAMA_MODELS=str(models),
                   LOCALLAMA_HOME=str(tmp_path / "home"), LOCALLAMA_REGISTRY=registry)
        self.log = tmp_path / log_name
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([LOCALLAMA, "serve"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while not server_answers("127.0.0.1", self.port, timeout=1):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=WAIT_S)


def test_a_server_killed_mid_upload_leaves_no_partial_after_restart(tmp_path, tiny_gguf):
    """kill -9 during a slow blob upload; the restarted server removes the orphan, keeps a
    pull's resumable partial, and a pull through it resumes that partial with Range."""
    models = tmp_path / "models"
    blobs = models / "blobs"
    data = tiny_gguf.read_bytes()
    with fake_registry() as registry:
        registry.add_model("library/tiny:latest", tiny_gguf)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        first = _Serve(tmp_path, models, registry.url, "first.log")
        stop = threading.Event()

        def slow_body() -> Iterator[bytes]:
            yield data[:200_000]
            while not stop.wait(0.05):
                yield b"x"  # keeps the upload open until the kill

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.post(f"{first.url}/api/blobs/{digest}", content=slow_body(),
                           timeout=WAIT_S)

        uploader = threading.Thread(target=upload, daemon=True)
        uploader.start()
        try:
            wait_for(lambda: any(p.stat().st_size >= 200_000
                                  for p in blobs.glob(".blob-*.partial")), "the upload's partial")
        finally:
            first.kill()
            stop.set()
            uploader.join(WAIT_S)
        orphans = list(blobs.glob(".blob-*.partial"))
        assert len(orphans) == 1  # what the kill left (today's probe)
        resumable = blobs / f"sha256-{digest[7:]}-partial"
        resumable.write_bytes(data[:300_000])  # what a killed pull leaves

        second = _Serve(tmp_path, models, registry.url, "second.log")
        try:
            assert not orphans[0].exists()
            assert "removed 1 partial file (" in second.log.read_text()
            assert "left by a stopped process" in second.log.read_text()
            assert "kept 1 unfinished download (300 KB) for the next pull to resume" in (
                second.log.read_text())
            assert resumable.exists()
            pulled = httpx.post(f"{second.url}/api/pull", json={"model": "tiny", "stream": False},
                                timeout=WAIT_S)
            assert pulled.status_code == 200, pulled.text
            assert registry.blob_gets(digest) == ["bytes=300000-"]
            assert not resumable.exists() and (blobs / f"sha256-{digest[7:]}").is_file()
            names = [m["name"] for m in httpx.get(f"{second.url}/api/tags").json()["models"]]
            assert names == ["tiny:latest"]
        finally:
            second.kill()
    assert not [n for n in store_files(models) if n.endswith((".partial", ".tmp", "-partial"))]


# -- a full disk: 507 ----------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path, tiny_gguf: Path):
    runtime = local_runtime(tmp_path, ("tiny", tiny_gguf), host="127.0.0.1", port=free_port())
    with serve(runtime, runtime.settings) as url:
        yield url, runtime
    runtime.close()


def _full(*_args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _assert_507(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["code"] == "insufficient_storage"
    assert body["error"].startswith("no space left on the device that holds ")
    assert "\n" not in body["error"]


def test_a_full_disk_answers_507_and_leaves_the_store_unchanged(live, monkeypatch, tmp_path):
    url, runtime = live
    root = runtime.store.root
    before = store_files(root)
    monkeypatch.setattr(blobs_module, "write_all", _full)
    data = b"a blob that does not fit"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _assert_507(httpx.post(f"{url}/api/blobs/{digest}", content=data))
    _assert_507(httpx.post(f"{url}/api/create", json={
        "model": "more", "from": "tiny", "system": "Be brief.", "stream": False}))
    _assert_507(httpx.post(f"{url}/api/copy", json={"source": "tiny", "destination": "twin"}))
    remote = RemoteRuntime(Settings(host="127.0.0.1", port=int(url.rsplit(":", 1)[1])))
    with pytest.raises(StorageFull, match="no space left"):  # the CLI's one line, remotely
        remote.copy("tiny", "twin")
    assert store_files(root) == before
    names = [m["name"] for m in httpx.get(f"{url}/api/tags").json()["models"]]
    assert names == ["tiny:latest"]


def test_an_upload_bigger_than_a_real_tmpfs_answers_507(tmp_path, tiny_gguf):
    with tmpfs(tmp_path / "small", "256k") as small:
        settings = Settings(host="127.0.0.1", port=free_port(), models_dir=small,
                            history_file=tmp_path / "history")
        runtime = LocalRuntime(settings)
        data = tiny_gguf.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with serve(runtime, settings) as url:
            _assert_507(httpx.post(f"{url}/api/blobs/{digest}", content=data))
            assert httpx.head(f"{url}/api/blobs/{digest}").status_code == 404
        runtime.close()
        assert store_files(small) == []


def test_the_openai_face_answers_507_in_its_shape():
    response = error_response(StorageFull("no space left on the device that holds "
                                          "/m (free 0 B)"), openai=True)
    assert response.status_code == 507
    error = json.loads(response.body)["error"]
    assert error["type"] == "server_error" and error["code"] == "insufficient_storage"
    assert error["message"].startswith("no space left on the device")


# -- broken manifests -----------------------------------------------------------------------------


def test_a_broken_model_is_listed_on_both_faces_and_removed_by_api_delete(live):
    url, runtime = live
    runtime.copy("tiny", "bad")
    manifest = runtime.store.manifest_path_exact(runtime.store.get("bad").name)
    manifest.write_text(manifest.read_text().replace('"sha256:', '"sha256:oops', 1))

    tags = {m["name"]: m for m in httpx.get(f"{url}/api/tags").json()["models"]}
    assert "invalid digest 'sha256:oops" in tags["bad:latest"]["broken"]
    assert "broken" not in tags["tiny:latest"]
    listed = ollama.Client(host=url).list()  # Ollama's own client still reads the listing
    assert {m.model for m in listed.models} == {"bad:latest", "tiny:latest"}
    models = {m["id"]: m for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert "invalid digest" in models["bad:latest"]["broken"] and "broken" not in models[
        "tiny:latest"]
    remote = {e.name.display: e for e in RemoteRuntime(
        Settings(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))).list()}
    assert "invalid digest" in remote["bad:latest"].broken and remote["tiny:latest"].broken is None

    shown = httpx.post(f"{url}/api/show", json={"model": "bad"})
    assert shown.status_code == 500
    assert "remove it with 'locallama rm bad:latest'" in shown.json()["error"]
    chat = httpx.post(f"{url}/api/chat", json={"model": "bad", "stream": False,
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 500 and "not a valid manifest" in chat.json()["error"]

    deleted = httpx.request("DELETE", f"{url}/api/delete", json={"model": "bad"})
    assert deleted.status_code == 200, deleted.text
    assert not manifest.exists()
    names = [m["name"] for m in httpx.get(f"{url}/api/tags").json()["models"]]
    assert names == ["tiny:latest"]
    assert httpx.post(f"{url}/api/show", json={"model": "tiny"}).status_code == 200
