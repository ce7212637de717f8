"""store/download.py: resumable, verified blob downloads (a fake registry on 127.0.0.1,
or httpx's MockTransport where the server must misbehave in a set way)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fakeregistry import FakeRegistry, digest_of, fake_registry, leftovers, model_digest
from locallama.errors import DigestMismatch, PullError
from locallama.progress import ProgressEvent
from locallama.runtime.local import LocalRuntime
from locallama.settings import Settings
from locallama.store.blobs import BlobStore
from locallama.store.download import RETRIES, fetch_blob, fetch_url, http_client

DATA = os.urandom(300_000)
DIGEST = digest_of(DATA)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def served() -> Iterator[tuple[FakeRegistry, str]]:
    """DATA as a registry blob: (the registry, the blob's URL)."""
    with fake_registry() as fake:
        fake.blobs[DIGEST] = DATA
        yield fake, f"{fake.url}/v2/library/m/blobs/{DIGEST}"


def mock(respond: Callable[[int], httpx.Response], seen: list[str | None]) -> httpx.Client:
    """A client whose server answers ``respond(start)``, start being the Range asked for."""

    def handler(request: httpx.Request) -> httpx.Response:
        wanted = request.headers.get("Range")
        seen.append(wanted)
        return respond(int(wanted[6:].split("-")[0]) if wanted else 0)

    return httpx.Client(transport=httpx.MockTransport(handler))


def cut_after(n: int) -> Callable[[int], httpx.Response]:
    """A server that honours Range but whose line drops after ``n`` bytes of every answer."""

    def respond(start: int) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield DATA[start:start + n]
            raise httpx.ReadError("connection reset")

        return httpx.Response(206 if start else 200, content=body(),
                              headers={"Content-Length": str(len(DATA) - start)})

    return respond


def partial_of(blobs: BlobStore, digest: str = DIGEST) -> Path:
    path = blobs.path(digest)
    return path.with_name(path.name + "-partial")


def names(blobs: BlobStore) -> list[str]:
    return sorted(p.name for p in blobs.root.iterdir()) if blobs.root.is_dir() else []


# -- through a pull ------------------------------------------------------------------------


def test_a_connection_cut_halfway_resumes_where_it_stopped(runtime, registry, tiny_gguf):
    digest = model_digest(registry, tiny_gguf)
    half = tiny_gguf.stat().st_size // 2
    registry.cut_after[digest] = half
    runtime.pull("tiny")
    assert registry.blob_gets(digest) == [None, f"bytes={half}-"]
    assert runtime.store.blobs.verify(digest)


def test_a_blob_with_the_wrong_digest_never_enters_the_store(runtime, registry, tiny_gguf):
    digest = model_digest(registry, tiny_gguf)
    registry.corrupt.add(digest)
    with pytest.raises(DigestMismatch, match="nothing was stored"):
        runtime.pull("tiny")
    assert not runtime.store.exists("tiny")
    assert f"sha256-{digest[7:]}" not in leftovers(runtime)
    assert not [n for n in leftovers(runtime) if n.endswith("-partial")]


def test_two_pulls_of_one_blob_download_it_once(runtime, registry, tiny_gguf):
    registry.delay = 0.02
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            runtime.pull("tiny")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(registry.blob_gets(model_digest(registry, tiny_gguf))) == 1


def test_a_pull_killed_mid_download_finishes_when_run_again(tmp_path, registry, tiny_gguf):
    registry.delay = 0.1  # about a second for the model blob
    models = tmp_path / "models"
    code = ("from locallama.runtime.local import LocalRuntime\n"
            "from locallama.settings import Settings\n"
            f"LocalRuntime(Settings(models_dir={str(models)!r}, registry={registry.url!r}))"
            ".pull('tiny')\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    digest = model_digest(registry, tiny_gguf)
    partial = models / "blobs" / f"sha256-{digest[7:]}-partial"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (partial.is_file() and partial.stat().st_size):
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert partial.is_file() and 0 < partial.stat().st_size < tiny_gguf.stat().st_size

    registry.delay = 0.0
    rt = LocalRuntime(Settings(models_dir=models, history_file=tmp_path / "h",
                               registry=registry.url))
    try:
        assert not rt.store.exists("tiny")  # the killed pull wrote no manifest
        rt.pull("tiny")
        assert rt.store.blobs.verify(digest) and not partial.exists()
        assert registry.blob_gets(digest)[-1].startswith("bytes=")
    finally:
        rt.close()

# -- fetch_blob ------------------------------------------------------------------------------


def test_a_resumed_download_continues_from_the_partial_files_size(served, blobs):
    registry, url = served
    blobs.root.mkdir()
    partial_of(blobs).write_bytes(DATA[:100_000])  # what an interrupted pull left
    events: list[ProgressEvent] = []
    with http_client() as client:
        fetch_blob(client, url, blobs, DIGEST, len(DATA), events.append)
    assert registry.blob_gets(DIGEST) == ["bytes=100000-"]
    assert blobs.read_bytes(DIGEST) == DATA and blobs.verify(DIGEST)
    assert names(blobs) == [f"sha256-{DIGEST[7:]}"]  # no partial, no lock
    done = [e.completed for e in events]
    assert done == sorted(done) and done[-1] == len(DATA)
    assert all(e.total == len(DATA) and e.digest == DIGEST for e in events)


def test_a_partial_whose_bytes_are_wrong_is_refused_and_removed(served, blobs):
    _, url = served
    blobs.root.mkdir()
    partial_of(blobs).write_bytes(b"not the blob's first bytes")
    with http_client() as client, pytest.raises(DigestMismatch, match="nothing was stored"):
        fetch_blob(client, url, blobs, DIGEST, len(DATA), lambda event: None)
    assert not blobs.has(DIGEST) and not partial_of(blobs).exists()


def test_a_complete_partial_is_stored_without_downloading_again(served, blobs):
    registry, url = served
    blobs.root.mkdir()
    partial_of(blobs).write_bytes(DATA)  # killed after the last byte, before the rename
    with http_client() as client:
        fetch_blob(client, url, blobs, DIGEST, len(DATA), lambda event: None)
    assert registry.blob_gets(DIGEST) == [f"bytes={len(DATA)}-"]  # answered 416: nothing sent
    assert blobs.verify(DIGEST) and not partial_of(blobs).exists()


def test_a_stored_blob_is_not_fetched_and_shows_as_complete(served, blobs):
    registry, url = served
    blobs.add_bytes(DATA)
    events: list[ProgressEvent] = []
    with http_client() as client:
        fetch_blob(client, url, blobs, DIGEST, len(DATA), events.append)
    assert registry.requests == []
    assert [(e.completed, e.total) for e in events] == [(len(DATA), len(DATA))]


def test_a_server_that_ignores_the_range_is_read_from_the_start(blobs):
    seen: list[str | None] = []
    blobs.root.mkdir()
    partial_of(blobs).write_bytes(DATA[:1000])
    client = mock(lambda start: httpx.Response(200, content=DATA), seen)
    fetch_blob(client, "http://registry/blob", blobs, DIGEST, len(DATA), lambda event: None)
    assert seen == ["bytes=1000-"]
    assert blobs.read_bytes(DIGEST) == DATA  # not the first 1000 bytes twice


def test_a_line_cut_every_time_gives_up_after_the_retries_and_keeps_what_came(blobs):
    seen: list[str | None] = []
    with pytest.raises(PullError, match="interrupted .*run the pull again to resume"):
        fetch_blob(mock(cut_after(10), seen), "http://registry/blob", blobs, DIGEST, len(DATA),
                   lambda event: None)
    assert seen == [None, *(f"bytes={10 * n}-" for n in range(1, RETRIES))]
    assert partial_of(blobs).read_bytes() == DATA[:10 * RETRIES]  # for the next pull
    assert not blobs.has(DIGEST)


def test_an_error_status_is_a_pull_error_and_stores_nothing(blobs):
    client = mock(lambda start: httpx.Response(404), [])
    with pytest.raises(PullError, match="answered 404"):
        fetch_blob(client, "http://registry/blob", blobs, DIGEST, len(DATA), lambda event: None)
    assert not blobs.has(DIGEST) and not partial_of(blobs).exists()


# -- fetch_url ---------------------------------------------------------------------------------


def test_a_url_download_is_stored_under_the_digest_of_its_bytes(blobs):
    with fake_registry() as registry:
        url = registry.add_file("model.gguf", DATA)
        events: list[ProgressEvent] = []
        with http_client() as client:
            assert fetch_url(client, url, blobs, events.append) == (DIGEST, len(DATA))
            assert fetch_url(client, url, blobs, lambda event: None) == (DIGEST, len(DATA))
    assert names(blobs) == [f"sha256-{DIGEST[7:]}"]  # once, and no partial left
    assert events[-1].completed == events[-1].total == len(DATA)
    assert events[-1].digest is None  # not known until the last byte


def test_a_second_run_of_a_url_download_resumes_the_first(blobs):
    with pytest.raises(PullError):
        fetch_url(mock(cut_after(1000), []), "http://files/model.gguf", blobs,
                  lambda event: None)
    resumed: list[str | None] = []
    client = mock(lambda start: httpx.Response(206, content=DATA[start:]), resumed)
    assert fetch_url(client, "http://files/model.gguf", blobs, lambda event: None)[0] == DIGEST
    assert resumed == [f"bytes={1000 * RETRIES}-"]
    assert blobs.read_bytes(DIGEST) == DATA
