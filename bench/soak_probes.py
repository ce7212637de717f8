"""The hostile requests of bench/soak.py: what each sends and the answer issue 12
documents for it (status, and the face's own error shape), and how one is sent and
judged.  A probe counts as refused only with that status and shape."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

HOSTILE_TIMEOUT_S = 60.0  # a hostile request: far above LOCALLAMA_TEMPLATE_TIMEOUT
EVIL_ORIGIN = "http://evil.example"
EVIL_HOST = "evil.example"
BIG_BODY_BYTES = 20_000_000
LOOP_MODEL, BLOAT_MODEL = "soak-hostile-loop", "soak-hostile-bloat"
COPY_TARGET = "soak-copied-cross-origin"
#: Loops 10^10 times (minutes of CPU) and writes nothing: only a time limit stops it.
LOOP_TEMPLATE = ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}"
                 "{% endfor %}{{ messages[0]['content'] }}")
#: Writes 64 MB (10^6 times 64 bytes) quickly: only a size limit stops it early.
BLOAT_TEMPLATE = ("{% for a in range(1000) %}{% for b in range(1000) %}"
                  + "0123456789abcdef" * 4 + "{% endfor %}{% endfor %}")


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def label(status: int, body: Any, face: str, want_code: str | None = None) -> str:
    """How a refusal looked: "403" when the body has the face's error shape (and the
    wanted ``code``, when given as a string), else the status with what was wrong."""
    if face == "ollama":
        ok = isinstance(body, dict) and isinstance(body.get("error"), str)
        code = body.get("code") if ok else None
    else:
        error = body.get("error") if isinstance(body, dict) else None
        ok = isinstance(error, dict) and isinstance(error.get("message"), str)
        code = error.get("code") if ok else None
    if not ok:
        return f"{status} (not the {face} error shape)"
    if want_code is not None and code != want_code:
        return f"{status} code={code}"
    return str(status)


@dataclass(frozen=True)
class Probe:
    """One hostile kind: the request and the answer issue 12 documents."""

    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    code: str | None = None  # an error code the answer must carry
    big: int = 0  # send this many body bytes over a raw socket
    chunked: bool = False

    @property
    def face(self) -> str:
        return "openai" if self.path.startswith("/v1") else "ollama"

    @property
    def expected(self) -> str:
        return str(self.status)


def probes(model: str) -> dict[str, Probe]:
    chat = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                       "stream": False}).encode()
    evil = {"Origin": EVIL_ORIGIN, "Content-Type": "text/plain"}
    broken = b'{"model": "' + model.encode() + b'", "messages": [{"role": "user", "cont'
    hostile_chat = {name: json.dumps({"model": name, "stream": False,
                                      "messages": [{"role": "user", "content": "hi"}]}).encode()
                    for name in (LOOP_MODEL, BLOAT_MODEL)}
    return {
        "origin_copy": Probe("POST", "/api/copy", 403, evil, json.dumps(
            {"source": model, "destination": COPY_TARGET}).encode()),
        "origin_openai": Probe("POST", "/v1/chat/completions", 403, evil, chat),
        "host_ollama": Probe("GET", "/api/tags", 403, {"Host": EVIL_HOST}),
        "host_openai": Probe("GET", "/v1/models", 403, {"Host": EVIL_HOST}),
        "big_body": Probe("POST", "/api/chat", 413, big=BIG_BODY_BYTES),
        "big_body_chunked": Probe("POST", "/v1/chat/completions", 413, big=BIG_BODY_BYTES,
                                  chunked=True),
        "template_loop": Probe("POST", "/api/chat", 400, body=hostile_chat[LOOP_MODEL],
                               code="template_limit_exceeded"),
        "template_bloat": Probe("POST", "/v1/chat/completions", 400,
                                body=hostile_chat[BLOAT_MODEL], code="template_limit_exceeded"),
        "bad_json_ollama": Probe("POST", "/api/chat", 400, body=broken),
        "bad_json_openai": Probe("POST", "/v1/chat/completions", 400, body=broken),
        "route_ollama": Probe("GET", "/api/no-such-route", 404),
        "route_openai": Probe("POST", "/v1/no-such-route", 404, body=b"{}"),
        "method_ollama": Probe("GET", "/api/chat", 405),
        "method_openai": Probe("GET", "/v1/chat/completions", 405),
    }


def big_body(port: int, probe: Probe, model: str) -> tuple[int, bytes]:
    """POST ``probe.big`` bytes of valid JSON over a raw socket, stopping as soon as the
    server answers (a server that refuses early may close before the body is sent).

    The body asks for one token with a long ignored ``padding`` field, so a server
    without a limit only parses it.  Returns (status, body); OSError when no answer came.
    """
    if probe.face == "ollama":
        head = {"model": model, "messages": [{"role": "user", "content": "hi"}],
                "stream": False, "options": {"num_predict": 1}}
    else:
        head = {"model": model, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1}
    prefix = json.dumps(head)[:-1].encode() + b', "padding": "'
    suffix = b'"}'
    filler = probe.big - len(prefix) - len(suffix)
    framing = "Transfer-Encoding: chunked" if probe.chunked else f"Content-Length: {probe.big}"
    request = (f"{probe.method} {probe.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Content-Type: application/json\r\nConnection: close\r\n{framing}\r\n\r\n")
    piece = 64 * 1024
    deadline = time.monotonic() + HOSTILE_TIMEOUT_S
    with socket.create_connection(("127.0.0.1", port), timeout=HOSTILE_TIMEOUT_S) as sock:
        sock.sendall(request.encode())

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if probe.chunked else data

        def parts() -> Iterator[bytes]:  # the body, framed
            yield frame(prefix)
            for start in range(0, filler, piece):
                yield frame(b"x" * min(piece, filler - start))
            yield frame(suffix)
            if probe.chunked:
                yield b"0\r\n\r\n"

        pending, pieces = memoryview(b""), parts()
        while time.monotonic() < deadline:  # send until done or the server answers
            if not pending:
                part = next(pieces, None)
                if part is None:
                    break
                pending = memoryview(part)
            readable, writable, _ = select.select([sock], [sock], [],
                                                  max(0.0, deadline - time.monotonic()))
            if readable:
                break  # an answer (or a close) before the whole body: stop sending
            if writable:
                try:
                    pending = pending[sock.send(pending):]
                except OSError:
                    break  # closed on us mid-body; the answer may still be readable
        data = b""
        while time.monotonic() < deadline:
            try:
                more = sock.recv(65536)
            except OSError:
                break
            if not more:
                break
            data += more
            if _complete(data):
                break
    return _parse_response(data)


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False


def _parse_response(data: bytes) -> tuple[int, bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError("the connection closed without an answer")
    if b"transfer-encoding: chunked" in head.lower():
        body = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            body, rest = body + rest[:n], rest[n + 2:]
        rest = body
    return int(status_line[1]), rest


def send_probe(http: httpx.Client, port: int, model: str, probe: Probe) -> tuple[str, str]:
    """Send one hostile request; the outcome label ("403", "200", "timeout", ...) and
    the start of the answer's body (or the transport error)."""
    try:
        if probe.big:
            status, data = big_body(port, probe, model)
        else:
            headers = probe.headers
            if probe.body is not None and "Content-Type" not in headers:
                headers = {**headers, "Content-Type": "application/json"}
            r = http.request(probe.method, probe.path, headers=headers, content=probe.body)
            status, data = r.status_code, r.content
    except httpx.TimeoutException as exc:
        return "timeout", str(exc)
    except (httpx.HTTPError, OSError) as exc:
        return f"no answer ({type(exc).__name__})", str(exc)
    text = data[:300].decode("utf-8", "replace")
    if status != probe.status:
        return str(status), text
    return label(status, parse_json(data), probe.face, probe.code), text
