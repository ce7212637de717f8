"""Reading a task's input: stdin, a text file, or a web page reduced to its readable text.

Every failure is one line (an InvalidRequest), never a traceback: a missing or
binary file, an unreachable URL, a page with no readable text.
"""

from __future__ import annotations

import sys
from pathlib import Path

from locallama.errors import InvalidRequest

#: the most a task reads from a file or a URL; past this, it is not a document to prompt with
MAX_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 20.0  # seconds for connect and for each read
USER_AGENT = "locallama (+https://github.com/locallama)"


def read_input(source: str | None, *, allow_url: bool) -> tuple[str, str]:
    """(text, label) from ``source``: ``-`` or None for stdin, a URL, or a file path."""
    if source is None or source == "-":
        if source is None and sys.stdin.isatty():
            raise InvalidRequest("no input: name a file, or pipe text in (or use '-')")
        text, label = sys.stdin.read(), "stdin"
    elif source.startswith(("http://", "https://")):
        if not allow_url:
            raise InvalidRequest(f"this command reads files and stdin, not URLs: {source}")
        text, label = fetch_url(source), source
    else:
        text, label = read_text_file(Path(source)), source
    if not text.strip():
        raise InvalidRequest(f"nothing to work on: {label} is empty")
    return text, label


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's contents; a missing, unreadable or binary file is one line."""
    try:
        if path.is_dir():
            raise InvalidRequest(f"cannot read {path}: it is a directory")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InvalidRequest(f"cannot read {path}: {size:,} bytes is too large")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    text = decode_text(data)
    if text is None:
        raise InvalidRequest(f"cannot read {path}: it is not a text file")
    return text


def decode_text(data: bytes) -> str | None:
    """UTF-8 text (a BOM dropped), or None for binary data (NUL bytes, invalid UTF-8)."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def fetch_url(url: str) -> str:
    """A web page's readable text (HTML through trafilatura), or plain text as served."""
    import httpx

    try:
        with (httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True,
                           headers={"User-Agent": USER_AGENT}) as client,
              client.stream("GET", url) as response):
            response.raise_for_status()
            data = _read_limited(response)
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            encoding = response.encoding or "utf-8"
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        raise InvalidRequest(
            f"cannot fetch URL: {url} answered {status} {exc.response.reason_phrase}".rstrip()
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise InvalidRequest(f"cannot fetch URL: {url}: {_reason(exc)}") from None
    if kind.startswith("text/") and kind not in ("text/html", "text/xml"):
        return data.decode(encoding, errors="replace")
    if kind and "html" not in kind and "xml" not in kind:
        raise InvalidRequest(f"cannot use URL: {url} is {kind}, not a web page or text")
    text = html_to_text(data.decode(encoding, errors="replace"), url)
    if not text:
        raise InvalidRequest(f"no readable text found at {url}")
    return text


def html_to_text(html: str, url: str | None = None) -> str | None:
    """The main text of an HTML page (trafilatura: boilerplate, menus and scripts left out),
    with headings and lists kept as Markdown; None when the page has none."""
    import trafilatura

    text = trafilatura.extract(html, url=url, output_format="markdown", include_comments=False,
                               include_tables=True, favor_recall=True)
    return text.strip() if text and text.strip() else None


def _read_limited(response) -> bytes:  # noqa: ANN001  (an httpx.Response, imported lazily)
    data = bytearray()
    for block in response.iter_bytes():
        data += block
        if len(data) > MAX_BYTES:
            raise InvalidRequest(f"cannot fetch URL: {response.url} is larger than "
                                 f"{MAX_BYTES // (1024 * 1024)} MB")
    return bytes(data)


def _reason(exc: Exception) -> str:
    """httpx's message, else its kind (a bare ConnectError can have an empty message)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
