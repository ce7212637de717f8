"""The chat page's files at /ui/ and its extract endpoint, through the real app."""

from __future__ import annotations

import gzip

import httpx
import pytest

from docshelpers import make_pdf
from fakeruntime import FakeRuntime
from liveserver import serve


@pytest.fixture
def url(tmp_path):
    with serve(FakeRuntime(), tmp=tmp_path, api_key="sesame") as base:
        yield base


def test_the_page_is_served_with_types_cache_and_csp(url):
    page = httpx.get(url + "/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="app.js"' in page.text
    assert page.headers["cache-control"] == "no-cache" and page.headers["etag"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(url + "/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(url + "/ui/style.css").headers["content-type"].startswith("text/css")
    again = httpx.get(url + "/ui/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    assert httpx.get(url + "/ui", follow_redirects=False).headers["location"] == "/ui/"
    assert httpx.get(url + "/").text == "locallama is running"  # as before
    assert httpx.get(url + "/ui/nothing.js").status_code == 404


def test_gzip_for_clients_that_take_it(url):
    raw = httpx.get(url + "/ui/vendor/marked.js", headers={"Accept-Encoding": "identity"})
    packed = httpx.Client().send(httpx.Request("GET", url + "/ui/vendor/marked.js",
                                               headers={"Accept-Encoding": "gzip"}), stream=True)
    body = packed.read()  # httpx decodes; the header says what travelled
    assert packed.headers["content-encoding"] == "gzip" and body == raw.content
    assert len(gzip.compress(raw.content)) < len(raw.content) / 2


def test_the_guard_still_applies(url):
    assert httpx.get(url + "/ui/", headers={"Origin": "https://evil.example"}).status_code == 403
    assert httpx.get(url + "/ui/", headers={"Host": "evil.example"}).status_code == 403
    assert httpx.post(url + "/ui/api/extract", content=b"%PDF-").status_code == 401


def test_extract_reads_a_pdf_and_refuses_other_bytes(url, tmp_path):
    key = {"Authorization": "Bearer sesame"}
    pdf = make_pdf(tmp_path / "a.pdf", ["first page", "second page"]).read_bytes()
    answer = httpx.post(url + "/ui/api/extract", content=pdf, headers=key)
    assert answer.status_code == 200
    assert answer.json() == {"text": "first page\n\nsecond page", "pages": 2}
    refused = httpx.post(url + "/ui/api/extract", content=b"plain text", headers=key)
    assert refused.status_code == 400 and "only PDF" in refused.json()["error"]
    broken = httpx.post(url + "/ui/api/extract", content=b"%PDF-1.4 garbage", headers=key)
    assert broken.status_code == 400 and "not a readable PDF" in broken.json()["error"]


def test_extract_is_held_to_the_request_limit(tmp_path):
    from liveserver import free_port
    from locallama.settings import Settings

    settings = Settings(host="127.0.0.1", port=free_port(), models_dir=tmp_path / "m",
                        history_file=tmp_path / "h", max_request_bytes=1000)
    with serve(FakeRuntime(), settings) as base:
        too_big = httpx.post(base + "/ui/api/extract", content=b"%PDF-" + b"x" * 2000)
        assert too_big.status_code == 413
