"""The chat page: the static files of ``locallama/web/`` at ``/ui/``, and the one
endpoint the page needs that the API faces lack (a PDF attachment's text).

The files are served as they ship in the package (no build step, no network): gzip
for clients that take it, ``Cache-Control: no-cache`` with an ETag (a browser
revalidates and gets 304s, and never runs a stale page after an upgrade), a strict
Content-Security-Policy (scripts only from this server, no inline script: a
second wall behind the page's sanitizing of model output), ``nosniff``.  The guard
runs before all of it: Host and Origin checks apply; the static files themselves
need no API key (they hold no data, and a browser's navigation cannot send one), the
page's API calls and ``/ui/api/*`` do.
"""

from __future__ import annotations

import mimetypes
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locallama.errors import InvalidRequest
from locallama.pdftext import PdfError, pdf_pages

#: where the page is served
PREFIX = "/ui"
#: the page's own API (under the key like every other API path)
API_PREFIX = PREFIX + "/api/"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff"),
           (b"content-security-policy", CSP.encode()), (b"referrer-policy", b"no-referrer")]

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/css", ".css")
mimetypes.add_type("font/woff2", ".woff2")

router = APIRouter()


def web_dir() -> Path:
    """The page's files inside the installed package."""
    return Path(str(files("locallama") / "web"))


@router.post(API_PREFIX + "extract", include_in_schema=False)
async def extract(request: Request) -> JSONResponse:
    """A PDF's text for an attachment: the file's bytes as the body (the guard holds it
    to LOCALLAMA_MAX_REQUEST_BYTES); answers ``{"text", "pages"}``, pages apart by a
    blank line.  400 for anything that is not a readable PDF."""
    data = await request.body()
    if not data.startswith(b"%PDF-"):
        raise InvalidRequest("only PDF files are extracted here (the page reads text "
                             "files itself)", "body")
    try:
        pages = await run_in_threadpool(pdf_pages, data)  # not on the event loop
    except PdfError as exc:
        raise InvalidRequest(str(exc), "body") from None
    return JSONResponse({"text": "\n\n".join(p.strip() for p in pages).strip(),
                         "pages": len(pages)})


class _Headers:
    """Adds HEADERS to every answer of the static app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with)


def mount(app: FastAPI) -> None:
    """Add the page to ``app``: the extract route, ``/ui`` -> ``/ui/``, the files."""
    app.include_router(router)

    @app.get(PREFIX, include_in_schema=False)
    async def to_page() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=308)

    static = StaticFiles(directory=web_dir(), html=True)
    app.mount(PREFIX, GZipMiddleware(_Headers(static), minimum_size=512), name="ui")
