"""The guard: one gate in front of every face (DESIGN.md rule 8: Origin and Host are input).

A pure ASGI middleware.  For each HTTP request, before any route runs:

1. **Host** (DNS rebinding): on a loopback bind, a ``Host`` that does not name this
   machine is refused with 403 (Ollama's ``allowedHostsMiddleware`` rule: localhost,
   ``*.localhost``/``*.local``/``*.internal``, the machine's hostname, and loopback,
   private or unspecified IP addresses, any port).  A non-loopback bind is reachable
   by address anyway, so hosts are not checked there.
2. **Origin** (CORS): a request with an ``Origin`` that is not allowed is refused with
   403 whatever its method and content type, so a page elsewhere cannot make the
   server act with a "simple" ``text/plain`` POST.  Allowed: the local origins Ollama
   allows (``http(s)://localhost|127.0.0.1|0.0.0.0`` with any port, plus ``[::1]``),
   ``app://*``, ``file://*``, ``tauri://*``, ``vscode-webview://*``,
   ``vscode-file://*``, the server's own origin when the page reached it by a name of this
   machine or an address (same-origin pages; never another DNS name), and the
   LOCALLAMA_ORIGINS patterns (``*`` matches any run of characters; ``*`` alone
   allows every origin).  No ``Origin`` (curl, SDKs): nothing to check.  A CORS
   preflight from an allowed origin is answered here (204) on every path.
3. **API key** (``auth.refusal``): 401 without ``Authorization: Bearer <key>`` or
   ``x-api-key: <key>``.
4. **Body size** (RFC 9110 413): a ``Content-Length`` over the limit is refused
   before reading; a chunked body is counted as it arrives and cut at the limit, so
   at most the limit is ever held.  Blob uploads (``POST /api/blobs/{digest}``) get
   LOCALLAMA_MAX_BLOB_BYTES, everything else LOCALLAMA_MAX_REQUEST_BYTES.

Refusals and any fault that escapes a route are answered in the error shape of
the face the path belongs to (``/v1/messages*``: Anthropic's, other ``/v1/*``:
OpenAI's, anything else: Ollama's).  After
the answer, one access-log record (logger ``locallama.access``) and the request
metrics are written: labelled by route template (``<unmatched>`` for no route) and
method (``other`` for any method outside the standard seven), so clients cannot grow
the label set; a request whose client left before any answer is recorded as 499.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locallama import metrics as metrics_mod
from locallama.errors import Forbidden, LocallamaError, PayloadTooLarge
from locallama.metrics import Metrics
from locallama.server import auth
from locallama.server.http_errors import error_response
from locallama.server.runtime_calls import as_error
from locallama.settings import Settings

access_log = logging.getLogger("locallama.access")
log = logging.getLogger("locallama.server")

#: the origins every server allows (Ollama's list, plus IPv6 loopback)
DEFAULT_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}{port}"
    for host in ("localhost", "127.0.0.1", "0.0.0.0", "[::1]")
    for scheme in ("http", "https")
    for port in ("", ":*")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
#: the methods counted under their own name in the metrics (others count as ``other``)
STANDARD_METHODS = frozenset(m.strip() for m in ALLOW_METHODS.split(","))
#: logged and counted for a request whose client left before any answer (nginx's 499)
CLIENT_CLOSED_REQUEST = 499
#: sent when a preflight names no headers; when it names some, they are echoed back
ALLOW_HEADERS = ("Authorization, Content-Type, User-Agent, Accept, X-Requested-With, "
                 "OpenAI-Organization, OpenAI-Project, X-Stainless-Lang, "
                 "X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, "
                 "X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Async, "
                 "X-Stainless-Retry-Count, X-Stainless-Timeout, X-Api-Key, "
                 "Anthropic-Version, Anthropic-Beta, "
                 "Anthropic-Dangerous-Direct-Browser-Access")
PREFLIGHT_MAX_AGE_S = 12 * 3600
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
#: body fields written to the access log with --log-prompts
_PROMPT_FIELDS = ("system", "prompt", "suffix", "messages", "input")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1): a bind only
    this machine can reach."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str) -> bool:
    """Whether a ``Host`` header names this machine (see the module's rule 1)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".")
    if not host or host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        return True
    if host == socket.gethostname().lower():
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def origin_pattern(pattern: str) -> re.Pattern[str]:
    """A LOCALLAMA_ORIGINS entry as a regular expression: ``*`` is any run of characters,
    everything else literal, case-insensitive."""
    parts = (re.escape(part) for part in pattern.strip().split("*"))
    return re.compile(".*".join(parts), re.IGNORECASE)


@dataclass
class _Exchange:
    """What one request did, for the log line and the metrics."""

    method: str
    path: str
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    started: bool = False  # the response's start was sent
    overflow: bool = False  # the body passed its limit
    left: bool = False  # the client disconnected before the response's start was sent
    body: list[bytes] = field(default_factory=list)  # kept only with log_prompts
    scope: Scope | None = None  # the scope the app saw (it names the route)


class Guard:
    """The ASGI middleware (see the module docstring); one per app.

    ``routes`` are the app's routes, matched only to name a refused request's route
    template in the log and metrics.  ``log_prompts``: the access log also carries
    the body's prompt fields (off by default: prompts are private).
    """

    def __init__(self, app: ASGIApp, *, settings: Settings, metrics: Metrics | None = None,
                 routes: Sequence[BaseRoute] = (), log_prompts: bool = False) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.routes = routes
        self.log_prompts = log_prompts
        self.check_hosts = is_loopback_host(settings.host)
        self.origins = [origin_pattern(p) for p in (*DEFAULT_ORIGINS, *settings.allowed_origins)]

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Whether a page at ``origin`` may call this server (rule 2)."""
        origin = origin.strip()
        if any(p.fullmatch(origin) for p in self.origins):
            return True
        # Same-origin: the server's own page, reached by a name of this machine or an
        # address.  Never by any other DNS name: on a bind others can reach, that is
        # what a DNS-rebinding page would send (Host and Origin both its own name).
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme.lower() in ("http", "https") and \
            rest.lower() == host_header.strip().lower() and host_allowed(host_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        ex = _Exchange(scope["method"], scope["path"])
        note, token = metrics_mod.begin_request(self.metrics)
        try:
            await self._handle(scope, receive, send, ex)
        finally:
            metrics_mod.end_request(token)
            self._record(scope, ex, note, time.perf_counter() - began)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        origin = headers.get("origin")
        cors: list[tuple[bytes, bytes]] = []
        error: LocallamaError | None = None
        if self.check_hosts and not host_allowed(host):
            error = Forbidden(f"host {host!r} is not allowed: this server answers requests "
                              "to this machine's own names only (DNS rebinding protection)")
        elif origin is not None:
            if self.origin_allowed(origin, host):
                cors = [(b"access-control-allow-origin", origin.encode("latin-1")),
                        (b"vary", b"Origin")]
            else:
                error = Forbidden(f"origin {origin!r} is not allowed; add it to "
                                  "LOCALLAMA_ORIGINS to let that page call this server")
        if error is None and origin is not None and ex.method == "OPTIONS" and \
                "access-control-request-method" in headers:
            await self._preflight(send, ex, cors, headers)
            return
        if error is None:
            error = auth.refusal(ex.method, ex.path, headers.get("authorization", ""),
                                 self.settings.api_key, headers.get("x-api-key", ""))
        limit, limit_name = self._limit(ex)
        if error is None and (length := headers.get("content-length", "")).isdigit() and \
                int(length) > limit:
            error = _too_large(limit, limit_name)
        send_out = self._sender(send, ex, cors)
        if error is not None:
            await self._answer_error(scope, send_out, ex, error)
            return

        async def limited() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not ex.started:
                ex.left = True
            elif message["type"] == "http.request":
                chunk = message.get("body", b"")
                ex.bytes_in += len(chunk)
                if ex.bytes_in > limit:
                    ex.overflow = True
                    raise _too_large(limit, limit_name)
                if self.log_prompts and chunk:
                    ex.body.append(chunk)
            return message

        if ex.method == "HEAD" and not self._routed(scope):
            scope = {**scope, "method": "GET"}  # HEAD answers wherever GET does (RFC 9110)
        ex.scope = scope
        try:
            await self.app(scope, limited, send_out)
        except Exception as exc:
            if ex.overflow:
                pass  # answered below
            elif ex.started:
                raise
            else:
                await self._answer_error(scope, send_out, ex, as_error(exc, "server"))
                return
        if ex.overflow and not ex.started:
            ex.overflow = False  # let the 413 itself through
            await self._answer_error(scope, send_out, ex, _too_large(limit, limit_name))

    def _routed(self, scope: Scope) -> bool:
        """Whether a route takes this path with this very method."""
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    def _limit(self, ex: _Exchange) -> tuple[int, str]:
        """The body limit in bytes for this request, and the setting that sets it."""
        if ex.method == "POST" and ex.path.startswith("/api/blobs/"):
            return self.settings.max_blob_bytes, "LOCALLAMA_MAX_BLOB_BYTES"
        return self.settings.max_request_bytes, "LOCALLAMA_MAX_REQUEST_BYTES"

    def _sender(self, send: Send, ex: _Exchange, cors: list[tuple[bytes, bytes]]) -> Send:
        """``send`` that adds the CORS headers, drops HEAD bodies, counts bytes, and
        swallows whatever the app answers once the body passed its limit."""

        async def send_out(message: Message) -> None:
            if ex.overflow:
                return
            if message["type"] == "http.response.start":
                ex.started = True
                ex.status = message["status"]
                if cors:
                    message = {**message, "headers": [*message.get("headers", ()), *cors]}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if ex.method == "HEAD" and body:
                    message = {**message, "body": b""}
                else:
                    ex.bytes_out += len(body)
            await send(message)

        return send_out

    async def _answer_error(self, scope: Scope, send: Send, ex: _Exchange,
                            error: LocallamaError) -> None:
        response = error_response(error, openai=is_openai_path(ex.path),
                                  anthropic=is_anthropic_path(ex.path))
        if error.code == "invalid_api_key":
            response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, _no_body, send)

    async def _preflight(self, send: Send, ex: _Exchange, cors: list[tuple[bytes, bytes]],
                         headers: Headers) -> None:
        asked = headers.get("access-control-request-headers", "").strip()
        answer = [*cors,
                  (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                  (b"access-control-allow-headers", (asked or ALLOW_HEADERS).encode("latin-1")),
                  (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode()),
                  (b"content-length", b"0")]
        ex.status = 204
        await send({"type": "http.response.start", "status": 204, "headers": answer})
        await send({"type": "http.response.body", "body": b""})

    def _route(self, scope: Scope, ex: _Exchange) -> str:
        """The route template that served (or would have served) the request."""
        route = (ex.scope or scope).get("route")
        if route is not None and getattr(route, "path", None):
            return route.path
        if scope["method"] == "OPTIONS":
            return "<preflight>"
        return _template(self.routes, scope) or "<unmatched>"

    def _record(self, scope: Scope, ex: _Exchange, note: metrics_mod.RequestNote,
                seconds: float) -> None:
        route = self._route(scope, ex)
        status = _status(ex)
        if self.metrics is not None:
            self.metrics.observe_request(route, metric_method(ex.method), status, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": ex.method, "route": route, "path": ex.path, "status": status,
            "duration_s": round(seconds, 6), "model": note.model,
            "client": f"{client[0]}:{client[1]}" if client else None,
            "bytes_in": ex.bytes_in, "bytes_out": ex.bytes_out,
        }
        if self.log_prompts and ex.body:
            entry.update(_prompt_fields(b"".join(ex.body)))
        access_log.info("%s %s %s %.3fs", ex.method, ex.path, status, seconds,
                        extra={"request": entry})


def _status(ex: _Exchange) -> int:
    """The status to log and count: the one sent; 499 (nginx's "client closed request")
    when the client left before any was sent, whatever the app answered after; 500 when
    nothing was sent although the client stayed (the app failed)."""
    if ex.left:
        return CLIENT_CLOSED_REQUEST
    return ex.status or 500


def metric_method(method: str) -> str:
    """A request method as a metrics label: the standard ones as they are, any other
    (a client may send any token) as ``other``, so clients cannot grow the label set."""
    return method if method in STANDARD_METHODS else "other"


def _template(routes: Sequence[Any], scope: Scope) -> str | None:
    """The path template of the first route that takes this path (any method)."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included routers
        if inner is not None:
            if found := _template(inner.routes, scope):
                return found
            continue
        if route.matches(scope)[0] != Match.NONE and getattr(route, "path", None):
            return route.path
    return None


def _too_large(limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {limit} bytes (set {setting} "
                           "to allow more)")


def _prompt_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in _PROMPT_FIELDS if k in data}


def is_openai_path(path: str) -> bool:
    """Whether ``path`` belongs to the OpenAI face (``/v1``); every other path answers
    in the Ollama face's shape.  (``/v1/messages`` is the Anthropic face's:
    ``is_anthropic_path`` comes first.)"""
    return path == "/v1" or path.startswith("/v1/")


def is_anthropic_path(path: str) -> bool:
    """Whether ``path`` belongs to the Anthropic face (``/v1/messages`` and below)."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
