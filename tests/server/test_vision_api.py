"""Images over the APIs: a tiny model with a tiny projector layer ("vision", built FROM
the tiny model and FROM tests/tinyvision.py's projector) behind a live server."""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liveserver import free_port, serve
from locallama.errors import InvalidRequest
from locallama.runtime.local import LocalRuntime
from locallama.server import image_urls
from locallama.server.image_urls import fetch_image
from locallama.settings import Settings
from runtimes import add_model, local_runtime
from tinyvision import IMAGE_TOKENS, png_bytes, write_tiny_projector

PNG1 = base64.b64encode(png_bytes(1)).decode()
PNG2 = base64.b64encode(png_bytes(2)).decode()
CORRUPT = base64.b64encode(b"\x89PNG\r\n\x1a\n but not really a picture").decode()
GREEDY = {"temperature": 0, "num_predict": 12}


class Live:
    def __init__(self, runtime: LocalRuntime, url: str) -> None:
        self.runtime, self.url = runtime, url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("vision-server")
    projector = write_tiny_projector(home / "mmproj.gguf")
    runtime = local_runtime(home, ("tiny", tiny_gguf), host="127.0.0.1", port=free_port(),
                            max_image_bytes=32 * 1024,  # a test picture is 12 KiB
                            image_fetch="all")  # the test's image host is on 127.0.0.1
    add_model(runtime, "vision", tiny_gguf, f"FROM {projector}\n")
    with serve(runtime, runtime.settings) as url:
        yield Live(runtime, url)
    runtime.close()


def post(live: Live, path: str, body: dict) -> httpx.Response:
    return httpx.post(live.url + path, json=body, timeout=120)


def generate(live: Live, images: list[str] | None, prompt: str = "describe",
             model: str = "vision") -> httpx.Response:
    body = {"model": model, "prompt": prompt, "stream": False, "options": GREEDY}
    if images is not None:
        body["images"] = images
    return post(live, "/api/generate", body)


def wrapper_tokens(live: Live) -> int:
    """The text mtmd puts around a Gemma 3 image (<start_of_image> ... <end_of_image>)."""
    return sum(len(live.runtime.tokenize("vision", text, add_special=False))
               for text in ("<start_of_image>", "<end_of_image>"))


def test_an_image_adds_its_tokens_to_prompt_eval_count(live: Live) -> None:
    one = generate(live, [PNG1])
    two = generate(live, [PNG1, PNG2])
    assert one.status_code == two.status_code == 200, (one.text, two.text)
    added = two.json()["prompt_tokens"] - one.json()["prompt_tokens"]  # the whole prompts
    # the second image adds its embeddings and the text mtmd puts around it; the
    # prompt's other text is the same
    assert added == IMAGE_TOKENS + wrapper_tokens(live)
    assert all(t >= 0 for t in one.json()["context"])  # placeholders never leave


def test_two_images_give_different_answers(live: Live) -> None:
    first = generate(live, [PNG1], prompt="what is this").json()["response"]
    second = generate(live, [PNG2], prompt="what is this").json()["response"]
    again = generate(live, [PNG1], prompt="what is this").json()["response"]
    assert first != second
    assert again == first


def test_chat_with_images_on_both_faces(live: Live) -> None:
    ollama = post(live, "/api/chat", {"model": "vision", "stream": False, "options": GREEDY,
                                      "messages": [{"role": "user", "content": "what is this",
                                                    "images": [PNG1]}]})
    assert ollama.status_code == 200, ollama.text
    openai = post(live, "/v1/chat/completions", {
        "model": "vision", "temperature": 0, "max_tokens": 12,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG1}"}}]}]})
    assert openai.status_code == 200, openai.text
    assert openai.json()["choices"][0]["message"]["content"] == ollama.json()["message"]["content"]
    assert openai.json()["usage"]["prompt_tokens"] == ollama.json()["prompt_tokens"]


def test_anthropic_image_blocks(live: Live) -> None:
    answer = post(live, "/v1/messages", {
        "model": "vision", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG1}},
            {"type": "text", "text": "what is this"}]}]})
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    assert usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) > IMAGE_TOKENS


def test_a_corrupt_image_is_a_400(live: Live) -> None:
    answer = generate(live, [CORRUPT])
    assert answer.status_code == 400
    assert "could not be read as an image" in answer.json()["error"]
    assert generate(live, ["%%% not base64 %%%"]).status_code == 400
    openai = post(live, "/v1/chat/completions", {
        "model": "vision", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{CORRUPT}"}}]}]})
    assert openai.status_code == 400
    assert openai.json()["error"]["type"] == "invalid_request_error"
    assert generate(live, [PNG1]).status_code == 200  # the model still serves


def test_a_model_without_vision_still_refuses_images(live: Live) -> None:
    answer = generate(live, [PNG1], model="tiny")
    assert answer.status_code == 400
    assert "does not support images" in answer.json()["error"]


def test_show_lists_vision_and_the_projector(live: Live) -> None:
    shown = post(live, "/api/show", {"model": "vision"}).json()
    assert "vision" in shown["capabilities"]
    assert shown["projector_info"]["clip.projector_type"] == "gemma3"
    assert shown["projector_info"]["general.architecture"] == "clip"
    assert shown["modelfile"].count("\nFROM ") == 2
    plain = post(live, "/api/show", {"model": "tiny"}).json()
    assert "vision" not in plain["capabilities"] and "projector_info" not in plain


class _Images(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/cat.png":
            body = png_bytes(1)
        elif self.path == "/huge.png":
            body = b"\0" * (64 * 1024)  # past the server's 32 KiB limit
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def openai_image(live: Live, url: str) -> httpx.Response:
    return post(live, "/v1/chat/completions", {
        "model": "vision", "temperature": 0, "max_tokens": 12,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": url}}]}]})


def test_an_image_url_is_fetched(live: Live, image_host: str) -> None:
    by_url = openai_image(live, f"{image_host}/cat.png")
    by_data = openai_image(live, f"data:image/png;base64,{PNG1}")
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["choices"][0]["message"]["content"] == \
        by_data.json()["choices"][0]["message"]["content"]
    missing = openai_image(live, f"{image_host}/missing.png")
    assert missing.status_code == 400
    assert "HTTP 404" in missing.json()["error"]["message"]
    huge = openai_image(live, f"{image_host}/huge.png")
    assert huge.status_code == 400
    assert "LOCALLAMA_MAX_IMAGE_BYTES" in huge.json()["error"]["message"]
    nowhere = openai_image(live, f"http://127.0.0.1:{free_port()}/x.png")
    assert nowhere.status_code == 400


def fetch(url: str, policy: str) -> str:
    """``fetch_image`` under ``LOCALLAMA_IMAGE_FETCH=policy``: the base64 or the 400's text."""
    settings = Settings(image_fetch=policy, max_image_bytes=32 * 1024)
    try:
        return asyncio.run(fetch_image(url, settings))
    except InvalidRequest as exc:
        return f"400: {exc}"


@pytest.mark.parametrize("policy", ["public", "off"])
def test_local_image_urls_are_refused_unless_all_are_allowed(image_host: str,
                                                             policy: str) -> None:
    port = image_host.rsplit(":", 1)[1]
    for url in (f"{image_host}/cat.png", f"http://localhost:{port}/cat.png",
                "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/x.png",
                "http://10.0.0.1/x.png"):
        answer = fetch(url, policy)
        assert answer.startswith("400: ") and f"LOCALLAMA_IMAGE_FETCH={policy}" in answer, url
    assert base64.b64decode(fetch(f"{image_host}/cat.png", "all")) == png_bytes(1)


def test_a_redirect_to_a_local_address_is_refused(image_host: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    async def loopback_ip_counts_as_public(url: str, shown: str) -> None:
        checked.append(url)  # 127.0.0.1 stands for a public host that redirects inward
        if httpx.URL(url).host == "localhost":
            raise InvalidRequest("localhost is local (LOCALLAMA_IMAGE_FETCH=public)")
    monkeypatch.setattr(image_urls, "_check_public", loopback_ip_counts_as_public)
    port = image_host.rsplit(":", 1)[1]
    assert base64.b64decode(fetch(f"{image_host}/cat.png", "public")) == png_bytes(1)
    inward = fetch(f"{image_host}/redirect?to=http://localhost:{port}/cat.png", "public")
    assert inward.startswith("400: ") and "LOCALLAMA_IMAGE_FETCH" in inward
    assert checked[-1] == f"http://localhost:{port}/cat.png"  # each hop is checked
    followed = fetch(f"{image_host}/redirect?to=/cat.png", "public")
    assert base64.b64decode(followed) == png_bytes(1)


def test_responses_input_image(live: Live, image_host: str) -> None:
    def ask(url: str) -> httpx.Response:
        return post(live, "/v1/responses", {
            "model": "vision", "temperature": 0, "max_output_tokens": 8, "store": False,
            "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "what is this"},
                {"type": "input_image", "image_url": url}]}]})

    by_data = ask(f"data:image/png;base64,{PNG1}")
    by_url = ask(f"{image_host}/cat.png")
    assert by_data.status_code == by_url.status_code == 200, (by_data.text, by_url.text)
    def text(answer: httpx.Response) -> str:
        return "".join(part["text"] for item in answer.json()["output"]
                       if item["type"] == "message" for part in item["content"])

    assert text(by_data) == text(by_url)
    assert ask(f"data:image/png;base64,{CORRUPT}").status_code == 400


def test_a_remote_create_uploads_the_projector_too(live: Live, tiny_gguf: Path,
                                                   tmp_path: Path) -> None:
    from locallama.client import RemoteRuntime
    from locallama.runtime.types import ChatRequest, Message
    from locallama.store.modelfile import parse_modelfile

    projector = write_tiny_projector(tmp_path / "mmproj.gguf", seed=3)
    remote = RemoteRuntime(live.runtime.settings)
    remote.create("remote-seer", parse_modelfile(f"FROM {projector}\nFROM {tiny_gguf}\n"),
                  tmp_path)
    assert "vision" in remote.show("remote-seer").capabilities
    chunks = list(remote.chat(ChatRequest("remote-seer", [
        Message("user", "what is this", images=[PNG1])], {"num_predict": 4})))
    assert chunks[-1].done and chunks[-1].prompt_tokens > IMAGE_TOKENS


def test_anthropic_url_images_are_fetched(live: Live, image_host: str) -> None:
    def ask(source: dict) -> httpx.Response:
        return post(live, "/v1/messages", {
            "model": "vision", "max_tokens": 6, "temperature": 0,
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": source}, {"type": "text", "text": "what"}]}]})

    by_url = ask({"type": "url", "url": f"{image_host}/cat.png"})
    by_data = ask({"type": "base64", "media_type": "image/png", "data": PNG1})
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["content"] == by_data.json()["content"]
    assert ask({"type": "url", "url": f"{image_host}/missing.png"}).status_code == 400
