"""A local Ollama registry on 127.0.0.1 for pull tests: the same URLs and shapes as
registry.ollama.ai (manifests by tag, blobs by digest, Range requests), with
faults to order: a connection cut after N bytes, corrupted bytes, a slow line.
The same server answers as a Hugging Face endpoint (``/api/models/...`` with
file metadata, ``/<repo>/resolve/<revision>/<file>``) and serves plain files.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    url: str = ""
    manifests: dict[str, bytes] = field(default_factory=dict)  # "ns/model:tag" -> JSON
    blobs: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # digest -> bytes, once
    corrupt: set[str] = field(default_factory=set)
    delay: float = 0.0  # seconds per 64 KiB block of a blob
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # path, Range
    files: set[str] = field(default_factory=set)  # plain files at /files/<name>
    hf_repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> files

    def add_hf_repo(self, repo: str, files: dict[str, bytes]) -> None:
        """A Hugging Face repository ("owner/name") holding ``files``."""
        self.hf_repos[repo] = files
        for name, data in files.items():
            self.blobs[f"hf:{repo}/{name}"] = data

    def _hf_info(self, repo: str) -> bytes:
        siblings = [{"rfilename": name, "size": len(data), "blobId": digest_of(data)[7:47],
                     "lfs": {"sha256": digest_of(data)[7:], "size": len(data),
                             "pointerSize": 134}}
                    for name, data in self.hf_repos[repo].items()]
        siblings.append({"rfilename": "README.md", "size": 10, "blobId": "0" * 40})
        return json.dumps({"id": repo, "modelId": repo, "sha": "a" * 40, "private": False,
                           "siblings": siblings}).encode()

    def add_file(self, name: str, data: bytes) -> str:
        """Serve ``data`` at ``/files/<name>`` (a plain download, as for URL pulls)."""
        self.blobs[name] = data
        self.files.add(name)
        return f"{self.url}/files/{name}"

    def add_model(self, name: str, gguf: Path, params: dict | None = None,
                  template: str | None = None) -> dict:
        """Publish ``gguf`` as ``name`` ("library/tiny:latest"); return the manifest."""
        layers = [self._layer("application/vnd.ollama.image.model", gguf.read_bytes())]
        if template is not None:
            layers.append(self._layer("application/vnd.ollama.image.template",
                                      template.encode()))
        if params is not None:
            layers.append(self._layer("application/vnd.ollama.image.params",
                                      json.dumps(params).encode()))
        config = self._layer("application/vnd.docker.container.image.v1+json",
                             json.dumps({"model_format": "gguf"}).encode())
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config,
                    "layers": layers}
        self.manifests[name] = json.dumps(manifest).encode()
        return manifest

    def _layer(self, media_type: str, data: bytes) -> dict:
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def blob_gets(self, digest: str) -> list[str | None]:
        return [r for p, r in self.requests if p.endswith(f"/blobs/{digest}")]


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server spelling
            registry.requests.append((self.path, self.headers.get("Range")))
            parts = self.path.split("/")
            if len(parts) >= 6 and parts[1] == "v2" and parts[4] == "manifests":
                key = f"{parts[2]}/{parts[3]}:{parts[5]}"
                if key in registry.manifests:
                    return self._send(200, registry.manifests[key], MANIFEST_TYPE)
                return self._send(404, json.dumps({"errors": [{
                    "code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode(),
                    "application/json")
            if len(parts) >= 6 and parts[1] == "v2" and parts[4] == "blobs":
                digest = parts[5]
                if digest in registry.blobs:
                    return self._blob(digest)
            if len(parts) == 3 and parts[1] == "files" and parts[2] in registry.files:
                return self._blob(parts[2])
            path = self.path.split("?", 1)[0]
            if path.startswith("/api/models/"):
                repo = "/".join(path.split("/")[3:5])
                if repo in registry.hf_repos:
                    return self._send(200, registry._hf_info(repo), "application/json")
                return self._send(404, b'{"error":"Repository not found"}', "application/json",
                                  {"X-Error-Code": "RepoNotFound"})
            if len(parts) >= 6 and parts[3] == "resolve":
                key = f"hf:{parts[1]}/{parts[2]}/{'/'.join(parts[5:])}"
                if key in registry.blobs:
                    return self._blob(key)
            return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json")

        def _send(self, status: int, body: bytes, kind: str,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _blob(self, digest: str) -> None:
            data = registry.blobs[digest]
            if digest in registry.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes="):
                start = int(wanted[6:].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            cut = registry.cut_after.pop(digest, None)
            body = data[start:] if cut is None else data[start:cut]
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i:i + (1 << 16)])
                self.wfile.flush()
                if registry.delay:
                    time.sleep(registry.delay)
            if cut is not None:
                self.close_connection = True
                self.connection.close()

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up mid-body (the tests' own doing) is not news


@contextmanager
def fake_registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    server = _QuietServer(("127.0.0.1", 0), _handler(registry))
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()


def model_digest(registry: FakeRegistry, gguf: Path) -> str:
    """The digest under which ``registry`` serves the model file ``gguf``."""
    return digest_of(gguf.read_bytes())


def leftovers(runtime) -> list[str]:
    """The names in a runtime's blob folder: what a pull left there."""
    root = runtime.store.blobs.root
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []
