"""The corrupted-GGUF corpus through a real ``locallama serve`` (issue 14, first test).

Every variant (tests/gguf_corpus.py, plus test_gguf_check's corpus) is uploaded as a
blob and created as a model, as any client could.  Each is either refused at create
with a 400 and one line that says what is wrong (more than the blob's hash), the
store as it was; or accepted, and then a generate on it answers or fails with a 500
naming the model.  After each variant the server still answers ``GET /`` and a
generate on the good model completes; at the end it is the same process, and its
log holds no Python traceback.  Run with ``-s`` for the counts.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gguf_corpus import METADATA, byte_variants
from liveserver import free_port
from locallama.cli.common import server_answers
from test_gguf_check import CORPUS
from tinymodel import write_tiny_gguf

LOCALLAMA = str(Path(sys.executable).with_name("locallama"))
WAIT_S = 60  # generous: a loaded 2-core machine
FEW = {"num_predict": 3}
_HASH = re.compile(r"(sha256[-:])?[0-9a-f]{64}")
#: a chat template inside the GGUF that does not compile: refused at create (it would
#: fail every later request), with the reason
BROKEN_TEMPLATES = {"chat template garbage", "chat template non-Jinja bytes"}


class _Server:
    """``locallama serve`` on a temporary store, its output in ``log``."""

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAMA_")}
        env.update(LOCALLAMA_HOST=f"127.0.0.1:{port}", LOCALLAMA_MODELS=str(tmp / "models"),
                   LOCALLAMA_HOME=str(tmp / "home"))
        self.log = tmp / "serve.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([LOCALLAMA, "serve"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.port = port
        deadline = time.monotonic() + WAIT_S
        while not server_answers("127.0.0.1", port, timeout=1):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        self.client = httpx.Client(base_url=self.url, timeout=WAIT_S)

    def upload(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        answer = self.client.post(f"/api/blobs/{digest}", content=data)
        assert answer.status_code in (200, 201), answer.text
        return digest

    def create(self, name: str, digest: str) -> httpx.Response:
        return self.client.post("/api/create", json={
            "model": name, "files": {"model.gguf": digest}, "stream": False})

    def generate(self, name: str, keep_alive: int | str = "5m") -> httpx.Response:
        return self.client.post("/api/generate", json={
            "model": name, "prompt": "Hello there", "stream": False, "options": FEW,
            "keep_alive": keep_alive})

    def tags(self) -> list[tuple[str, str]]:
        answer = self.client.get("/api/tags")
        assert answer.status_code == 200, answer.text
        return sorted((m["name"], m["digest"]) for m in answer.json()["models"])

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> dict[str, bytes]:
    """kind -> file bytes: test_gguf_check's corpus, the metadata and the byte variants."""
    folder = tmp_path_factory.mktemp("variants")
    out: dict[str, bytes] = {}
    for i, (kind, kwargs) in enumerate([*((k, v[0]) for k, v in CORPUS.items()),
                                        *METADATA.items()]):
        out[kind] = write_tiny_gguf(folder / f"{i}.gguf", **kwargs).read_bytes()
    return out | byte_variants(tiny_gguf)


@pytest.fixture
def server(tmp_path: Path, tiny_gguf: Path) -> Iterator[_Server]:
    served = _Server(tmp_path)
    try:
        assert served.create("good", served.upload(tiny_gguf.read_bytes())).status_code == 200
        yield served
    finally:
        served.stop()


def _what_is_wrong(message: str) -> str:
    """The refusal with the blob's path and any hash taken out: what it says is wrong."""
    return _HASH.sub("", message.split("blobs/", 1)[-1])


def _serve_one(server: _Server, index: int, kind: str, data: bytes) -> tuple[str, str]:
    """Create and (if accepted) generate one variant; (outcome, message or problem)."""
    before = server.tags()
    name = f"variant{index}"
    created = server.create(name, server.upload(data))
    if created.status_code == 400:
        message = created.json()["error"]
        reason = _what_is_wrong(message)
        if "\n" in message or len(re.findall(r"[A-Za-z]{3,}", reason)) < 3:
            return "problem", f"refusal is not one line saying what is wrong: {message!r}"
        if server.tags() != before:
            return "problem", f"refused, but the store changed: {server.tags()}"
        return "refused", reason.lstrip(": ")
    if created.status_code != 200:
        return "problem", f"create answered {created.status_code}: {created.text}"
    answer = server.generate(name, keep_alive=0)
    try:
        if answer.status_code == 200 and answer.json().get("done"):
            return "answered", repr(answer.json()["response"])
        error = answer.json().get("error", "") if answer.status_code == 500 else ""
        if error and name in error and "\n" not in error:
            return "failed", error
        return "problem", f"generate answered {answer.status_code}: {answer.text[:300]}"
    finally:
        deleted = server.client.request("DELETE", "/api/delete", json={"model": name})
        assert deleted.status_code == 200, deleted.text


def test_every_corrupted_variant_is_refused_or_served_without_harm(
        server: _Server, variants: dict[str, bytes]) -> None:
    assert len(variants) >= 60
    pid = server.proc.pid
    outcomes: dict[str, tuple[str, str]] = {}
    started = time.monotonic()
    for index, (kind, data) in enumerate(variants.items()):
        outcomes[kind] = _serve_one(server, index, kind, data)
        assert server.client.get("/").status_code == 200, f"GET / after {kind!r}"
        good = server.generate("good")
        assert good.status_code == 200 and good.json()["done"], (kind, good.text)
    elapsed = time.monotonic() - started

    counts = Counter(outcome for outcome, _ in outcomes.values())
    print(f"\n{len(variants)} corrupted variants in {elapsed:.0f} s: "
          f"{counts['refused']} refused at create, {counts['answered']} accepted and "
          f"answered, {counts['failed']} accepted and failed at generate, "
          f"{counts['problem']} problems")
    for kind, (outcome, message) in outcomes.items():
        print(f"  {outcome:12} {kind}: {message[:200]}")

    problems = {kind: message for kind, (outcome, message) in outcomes.items()
                if outcome == "problem"}
    assert not problems
    # what the header check refuses in process is refused through the server too
    assert all(outcomes[kind][0] == "refused" for kind in CORPUS)
    for kind in BROKEN_TEMPLATES:
        assert outcomes[kind][0] == "refused" and "chat template" in outcomes[kind][1]
    assert server.proc.poll() is None and server.proc.pid == pid
    listening = [c for c in psutil.Process(pid).net_connections()
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port]
    assert listening, "the server that answers is not the one started"
    assert "Traceback (most recent call last)" not in server.log.read_text()
