"""Reading input: stdin, files, and web pages served on 127.0.0.1 reduced to their text."""

import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.everyday.inputs import read_input

ARTICLE = """<!doctype html>
<html><head><title>Sea otters</title><script>var tracking = "SCRIPT-NOISE";</script>
<style>body { color: red }</style></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop MENU-NOISE</a></li></ul></nav>
<article>
<h1>Sea otters</h1>
<p>Sea otters are marine mammals native to the coasts of the northern and eastern North
Pacific Ocean. Adult sea otters typically weigh between 14 and 45 kilograms, which makes
them the heaviest members of the weasel family, but among the smallest marine mammals.</p>
<p>Unlike most marine mammals, the sea otter's primary form of insulation is an
exceptionally thick coat of fur, the densest in the animal kingdom. They use rocks to
crack open shellfish while floating on their backs.</p>
</article>
<footer>Copyright 2024 Example Corp. FOOTER-NOISE</footer>
</body></html>
"""

PAGES = {
    "/otters.html": (200, "text/html; charset=utf-8", ARTICLE.encode()),
    "/notes.txt": (200, "text/plain; charset=utf-8", b"plain notes\nline two\n"),
    "/empty.html": (200, "text/html", b"<html><body><script>x()</script></body></html>"),
    "/image.png": (200, "image/png", b"\x89PNG\r\n\x1a\n"),
    "/broken": (500, "text/plain", b"boom"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        status, kind, body = PAGES.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_web_page_becomes_its_readable_text(site):
    text, label = read_input(f"{site}/otters.html", allow_url=True)
    assert label == f"{site}/otters.html"
    assert "heaviest members of the weasel family" in text
    assert "densest in the animal kingdom" in text
    for noise in ("SCRIPT-NOISE", "MENU-NOISE", "color: red", "<p>"):
        assert noise not in text


def test_plain_text_urls_are_used_as_served(site):
    assert read_input(f"{site}/notes.txt", allow_url=True)[0] == "plain notes\nline two\n"


@pytest.mark.parametrize(("path", "message"), [
    ("/missing.html", "cannot fetch URL: .* answered 404"),
    ("/broken", "cannot fetch URL: .* answered 500"),
    ("/empty.html", "no readable text found at"),
    ("/image.png", "image/png, not a web page"),
])
def test_url_problems_are_one_line(site, path, message):
    with pytest.raises(InvalidRequest, match=message) as caught:
        read_input(f"{site}{path}", allow_url=True)
    assert "\n" not in str(caught.value)


def test_an_unreachable_url_is_one_line():
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InvalidRequest, match=f"cannot fetch URL: http://127.0.0.1:{port}/"):
        read_input(f"http://127.0.0.1:{port}/page", allow_url=True)


def test_urls_only_where_allowed(site):
    with pytest.raises(InvalidRequest, match="not URLs"):
        read_input(f"{site}/notes.txt", allow_url=False)


def test_files(tmp_path: Path):
    path = tmp_path / "a.md"
    path.write_text("# Title\n\nbody\n", encoding="utf-8")
    assert read_input(str(path), allow_url=False) == ("# Title\n\nbody\n", str(path))
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffhello".encode())
    assert read_input(str(bom), allow_url=False)[0] == "hello"


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: None, "cannot read .*: No such file or directory"),
    (lambda p: p.write_bytes(b"\x7fELF\x00\x01\x02"), "not a text file"),
    (lambda p: p.write_bytes(b"caf\xe9 latin-1"), "not a text file"),
    (lambda p: p.mkdir(), "it is a directory"),
    (lambda p: p.write_text("  \n\n"), "is empty"),
])
def test_file_problems_are_one_line(tmp_path: Path, make, message):
    path = tmp_path / "input"
    make(path)
    with pytest.raises(InvalidRequest, match=message) as caught:
        read_input(str(path), allow_url=True)
    assert "\n" not in str(caught.value)


def test_unreadable_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("x")

    def denied(self):  # as for a file without read permission (root reads any file)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InvalidRequest, match="Permission denied"):
        read_input(str(path), allow_url=False)


def test_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("piped text"))
    assert read_input("-", allow_url=False) == ("piped text", "stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("piped again"))
    assert read_input(None, allow_url=False) == ("piped again", "stdin")


def test_no_input_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(""))
    with pytest.raises(InvalidRequest, match="no input"):
        read_input(None, allow_url=False)
