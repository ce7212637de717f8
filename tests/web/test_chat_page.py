"""The chat page in headless chromium against a live ``locallama serve`` on tiny models
(and, for output the random-weight model cannot be made to write, a scripted runtime
served by the real app)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from webhelpers import HOSTILE, UiServer, screenshot, start_ui_server

from docshelpers import make_pdf
from fakeruntime import FakeRuntime
from liveserver import serve
from locallama.runtime.types import Chunk

ANSWER = "[data-role=assistant] .md"


@pytest.fixture(scope="module")
def chat_server(chromium, tmp_path_factory, tiny_gguf) -> UiServer:
    """The default models on one sequence per model (LOCALLAMA_NUM_PARALLEL=1): a
    second request waits until the first one's sequence is freed."""
    with start_ui_server(tmp_path_factory.mktemp("chat"), tiny_gguf,
                         LOCALLAMA_NUM_PARALLEL="1") as server:
        yield server


@pytest.fixture(scope="module")
def endless_server(chromium, tmp_path_factory, tiny_gguf) -> UiServer:
    """One model whose greedy answer never ends by itself (the prompt as its template:
    tiny's greedy continuation of "hello" never meets end-of-text; 4,000 tokens
    tried), on one sequence."""
    with start_ui_server(tmp_path_factory.mktemp("endless"), tiny_gguf,
                         {"endless": "TEMPLATE {{ .Prompt }}\n"},
                         LOCALLAMA_NUM_PARALLEL="1") as server:
        yield server


def open_chat(page, server: UiServer, model: str = "tiny") -> None:
    page.goto(server.page_url)
    page.wait_for_selector("[data-testid=input]")
    page.wait_for_function("[...document.querySelectorAll('[data-testid=model] option')]"
                           f".some(o => o.value === '{model}:latest')")
    page.select_option("[data-testid=model]", f"{model}:latest")


def send(page, text: str) -> None:
    page.fill("[data-testid=input]", text)
    page.press("[data-testid=input]", "Enter")


def pwned(page) -> object:
    return page.evaluate("window.__pwned")


class SlowRuntime(FakeRuntime):
    """A scripted answer, one word every 40 ms (the tiny model can finish in a frame)."""

    def _stream(self):
        for chunk in self.script:
            time.sleep(0.04)
            yield chunk
        self.closed.set()


SHOWCASE = """

A **fast** answer, with a list:

- the *tokens/s* come from the server's counts,
- the time to the first token is measured in the page.

```python
def area(r: float) -> float:
    return math.pi * r ** 2
```

and math: $A = \\pi r^2$.
"""

WATCH_ANSWER = """() => {
    window.__lengths = [];
    new MutationObserver(() => {
        const a = document.querySelector('[data-role=assistant] .md');
        if (a) window.__lengths.push(a.textContent.length);
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_the_answer_appears_token_by_token(page, tmp_path):
    words = [f"word{i} " for i in range(20)]
    runtime = SlowRuntime([*(Chunk(text=w) for w in words), Chunk(text=SHOWCASE),
                           Chunk(done=True, done_reason="stop", eval_count=20,
                                 eval_duration=800_000_000)])
    with serve(runtime, tmp=tmp_path) as url:
        page.goto(url + "/ui/")
        page.wait_for_function("document.querySelector('[data-testid=model]')?.value")
        page.evaluate(WATCH_ANSWER)
        send(page, "count")
        page.wait_for_selector("[data-testid=stats]")
        lengths = [n for n in page.evaluate("window.__lengths") if n]
        assert len(set(lengths)) >= 5, lengths  # seen growing, piece by piece
        assert lengths == sorted(lengths)
        assert page.inner_text(ANSWER).startswith("".join(words).strip())
        assert "25.0 tokens/s" in page.inner_text("[data-testid=stats]")
        page.wait_for_selector(".md .katex")
        page.wait_for_selector(".md pre code.hljs")
        page.wait_for_function(  # KaTeX's CSS applies: its MathML copy is for screen readers
            "getComputedStyle(document.querySelector('.katex-mathml')).position === 'absolute'")
        page.wait_for_function("document.fonts.status === 'loaded'")
        screenshot(page, "chat-page")


def test_send_and_see_the_answer(page, chat_server):
    open_chat(page, chat_server)
    # Shift+Enter is a new line, not a send
    page.fill("[data-testid=input]", "first line")
    page.click("[data-testid=settings] summary")
    page.fill("[data-testid=settings] input >> nth=4", "150")  # max tokens: a longer answer
    page.press("[data-testid=input]", "Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("[data-testid=input]") == "first line\nsecond line"
    assert page.locator("[data-role=user]").count() == 0
    page.press("[data-testid=input]", "Enter")
    page.wait_for_selector("[data-testid=stats], [data-role=assistant] .error", timeout=30_000)
    assert page.locator("[data-role=assistant] .error").count() == 0, page.inner_text("main")
    assert page.inner_text("[data-role=user] .user-text") == "first line\nsecond line"
    assert page.inner_text(ANSWER).strip()
    stats = page.inner_text("[data-testid=stats]")
    assert "tokens/s" in stats and "first token" in stats
    assert "/ 4096 tokens" in page.inner_text("[data-testid=context]")
    assert page.input_value("[data-testid=input]") == ""
    assert not page.errors, page.errors


class EndlessRuntime(FakeRuntime):
    """Answers forever, except the page's token count (/tokenize: a chat of num_predict 0)."""

    def chat(self, request):
        if request.options.get("num_predict") == 0:
            return iter([Chunk(done=True, done_reason="length", context=[1, 2, 3])])
        self.endless = True
        return super().chat(request)


def test_stop_ends_the_request_on_the_server(page, tmp_path):
    runtime = EndlessRuntime()
    with serve(runtime, tmp=tmp_path) as url:
        page.goto(url + "/ui/")
        page.wait_for_function("document.querySelector('[data-testid=model]')?.value")
        send(page, "go on forever")
        page.wait_for_function(
            "document.querySelector('[data-role=assistant] .md')?.textContent.length > 5")
        page.press("[data-testid=input]", "Escape")  # Stop from the keyboard
        page.wait_for_selector("text=Stopped.")
        assert runtime.closed.wait(5)  # the server closed the runtime's stream


def test_stop_frees_the_sequence(page, endless_server):
    open_chat(page, endless_server, "endless")
    page.click("[data-testid=settings] summary")
    page.fill("[data-testid=settings] input >> nth=0", "0")  # greedy: the same answer
    page.fill("[data-testid=settings] input >> nth=4", "100000")  # max tokens (num_predict)
    # Greedy, this model's answer to "hello" never ends by itself; sampled, an answer
    # could end before Stop, and Stop would find nothing to stop.
    send(page, "hello")
    page.wait_for_function(
        "document.querySelector('[data-role=assistant] .md')?.textContent.length > 100")
    assert page.locator("[data-testid=stats]").count() == 0  # still answering
    page.click("button.stop")
    page.wait_for_selector("text=Stopped.")
    assert page.locator("button.stop").count() == 0
    # one sequence for the model: this answer comes only once the stopped one is freed
    began = time.monotonic()
    answer = httpx.post(endless_server.url + "/api/generate", timeout=60, json={
        "model": "endless", "prompt": "hi", "stream": False, "options": {"num_predict": 4}})
    assert answer.status_code == 200 and answer.json()["done"]
    assert time.monotonic() - began < 10
    # regenerate and edit the last message
    page.fill("[data-testid=settings] input >> nth=4", "8")
    page.click("text=Regenerate")
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    assert page.locator("[data-role=assistant]").count() == 1
    page.click("text=Edit last message")
    assert page.input_value("[data-testid=input]") == "hello"
    assert page.locator("[data-role=user]").count() == 0
    page.fill("[data-testid=input]", "a short one")
    page.press("[data-testid=input]", "Enter")
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    assert page.inner_text("[data-role=user] .user-text") == "a short one"


def test_switch_models_and_reload_finds_the_conversation(page, chat_server):
    open_chat(page, chat_server, "thinker")
    send(page, "which model are you")
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    assert page.inner_text("[data-role=assistant] .who") == "thinker:latest"
    # (thinker shares tiny's weights, so ps names one runner; the access log names the model)
    assert '"POST /api/chat" 200' in chat_server.log.read_text().split("model=thinker:latest")[0]
    page.select_option("[data-testid=model]", "tiny:latest")
    send(page, "and now")
    page.wait_for_function("document.querySelectorAll('[data-testid=stats]').length == 2",
                           timeout=30_000)
    assert "model=tiny:latest" in chat_server.log.read_text().split("model=thinker:latest")[-1]
    assert page.locator("[data-role=assistant] .who").all_inner_texts() == [
        "thinker:latest", "tiny:latest"]
    page.reload()
    page.wait_for_selector("[data-testid=conversations] .conv")
    page.click("[data-testid=conversations] .conv >> text=which model are you")
    page.wait_for_selector("[data-role=assistant]")
    assert page.locator("[data-role=user] .user-text").all_inner_texts() == [
        "which model are you", "and now"]
    assert page.input_value("[data-testid=model]") == "tiny:latest"
    assert not page.errors, page.errors


def test_export_and_import(page, chat_server, tmp_path: Path):
    open_chat(page, chat_server)
    send(page, "remember this")
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    with page.expect_download() as download:
        page.click("text=Export")
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert data["format"] == "locallama-conversations"
    (conv,) = data["conversations"]
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    # delete it (confirming), then import it back
    page.once("dialog", lambda d: d.accept())
    page.click("[data-testid=conversations] button[title=Delete]")
    page.wait_for_function("!document.body.innerText.includes('remember this')")
    page.set_input_files("[data-testid=import-file]", str(exported))
    page.wait_for_selector("[data-testid=notice] >> text=Imported 1 conversation")
    page.click("[data-testid=conversations] .conv >> text=remember this")
    assert page.inner_text("[data-role=user] .user-text") == "remember this"
    assert page.locator(ANSWER).count() == 1
    # a file that is not an export is refused in words
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    page.set_input_files("[data-testid=import-file]", str(bad))
    page.wait_for_selector("[data-testid=notice] >> text=Import failed")


def test_hostile_system_and_license_render_as_text(page, chat_server):
    open_chat(page, chat_server, "hostile")
    page.click("[data-testid=settings] summary")
    page.wait_for_selector("[data-testid=model-license]", state="attached")
    assert page.inner_text("[data-testid=model-system]") == HOSTILE
    page.click("[data-testid=model-info] summary")
    assert page.inner_text("[data-testid=model-license]") == HOSTILE
    assert page.locator("#app img, #app script").count() == 0
    assert pwned(page) is None
    assert not page.errors, page.errors


def test_hostile_model_output_renders_as_text(page, chromium, tmp_path: Path):
    """The model's output (and thinking) holding script: a scripted runtime behind the
    real app (the random-weight model cannot be told what to write)."""
    runtime = FakeRuntime([
        Chunk(thinking="I think " + HOSTILE),
        Chunk(text="Here: " + HOSTILE + "\n\n"),
        Chunk(text="```python\nprint('<b>hi</b>')\n```\n\nand $x^2$ and "
                   "[link](javascript:window.__pwned=1)"),
        Chunk(done=True, done_reason="stop", eval_count=3, eval_duration=1_000_000,
              prompt_eval_count=5)])
    with serve(runtime, tmp=tmp_path) as url:
        page.goto(url + "/ui/")
        page.wait_for_selector("[data-testid=input]")
        page.wait_for_function("document.querySelector('[data-testid=model]')?.value")
        send(page, "say something nasty")
        page.wait_for_selector("[data-testid=stats]")
        page.wait_for_selector(".md .katex")
        page.wait_for_selector(".md pre code.hljs")
        answer = page.locator(ANSWER)
        assert answer.locator("script, [onerror]").count() == 0
        assert "Here:" in answer.inner_text()
        thinking = page.locator("details.thinking")
        assert thinking.get_attribute("open") is None  # collapsed by default
        assert "<script>window.__pwned=1</script>" in thinking.locator(
            ".thinking-text").text_content()
        assert page.locator("pre button.copy").count() == 1
        assert answer.locator("a").get_attribute("href") in (None, "")
        answer.locator("a").click()  # its javascript: URL was dropped by the sanitizer
        page.wait_for_timeout(200)
        assert pwned(page) is None
        assert runtime.requests[0].messages[-1].content == "say something nasty"


def test_the_api_key_is_asked_once_and_kept(page, chromium, tmp_path, tiny_gguf):
    with start_ui_server(tmp_path, tiny_gguf, {"tiny": ""},
                         LOCALLAMA_API_KEY="sesame") as server:
        assert httpx.get(server.url + "/api/tags").status_code == 401
        assert httpx.get(server.page_url).status_code == 200  # the files need no key
        page.goto(server.page_url)
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        dialog.locator("input").fill("sesame")
        dialog.locator("button.primary").click()
        page.wait_for_function(
            "[...document.querySelectorAll('[data-testid=model] option')].some("
            "o => o.value === 'tiny:latest')")
        assert page.evaluate("localStorage.getItem('locallama.apiKey')") == "sesame"
        send(page, "hello")
        page.wait_for_selector("[data-testid=stats]", timeout=30_000)
        page.reload()
        page.wait_for_selector("[data-testid=conversations] .conv >> text=hello")
        assert not dialog.is_visible()


def test_attachments_text_pdf_and_images(page, chat_server, tmp_path: Path):
    open_chat(page, chat_server)
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\nthe secret word is teapot\n")
    pdf = make_pdf(tmp_path / "paper.pdf", ["PDF page one", "PDF page two"])
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    page.set_input_files("[data-testid=attach]", [str(notes), str(pdf), str(image)])
    page.wait_for_selector("[data-testid=notice] >> text=images are not supported")
    page.wait_for_selector(".files.pending >> text=paper.pdf")
    assert page.locator(".files.pending li").count() == 2
    send(page, "what is in these files")
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    assert page.locator("[data-role=user] .files li").all_inner_texts() == [
        "notes.md", "paper.pdf"]
    stored = page.evaluate("""() => new Promise(ok => {
        indexedDB.open('locallama').onsuccess = (e) => {
            e.target.result.transaction('conversations').objectStore('conversations')
              .getAll().onsuccess = (r) => ok(r.target.result);
        };
    })""")
    (attachments,) = [m["attachments"] for c in stored for m in c["messages"]
                      if m.get("attachments")]
    assert "teapot" in attachments[0]["text"]
    assert attachments[1]["text"] == "PDF page one\n\nPDF page two"


def test_a_history_past_num_ctx_drops_older_turns_with_a_notice(page, chat_server):
    open_chat(page, chat_server)
    page.click("[data-testid=settings] summary")
    page.fill("[data-testid=settings] input >> nth=2", "96")  # num_ctx
    page.fill("[data-testid=settings] input >> nth=4", "40")  # max tokens
    send(page, "one two three")
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    assert page.locator("[data-testid=notice]").count() == 0
    send(page, "four five six")
    page.wait_for_function("document.querySelectorAll('[data-testid=stats]').length == 2",
                           timeout=30_000)
    notice = page.inner_text("[data-testid=notice]")
    assert "no longer fits" in notice and "num_ctx 96" in notice
    assert "/ 96 tokens" in page.inner_text("[data-testid=context]")


def test_phone_width_and_dark_theme(chromium, chat_server):
    context = chromium.new_context(viewport={"width": 390, "height": 760}, bypass_csp=True,
                                   color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(chat_server.page_url)
        page.wait_for_selector("[data-testid=input]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert not page.locator(".sidebar").is_visible() or \
            page.locator(".sidebar").bounding_box()["x"] < 0
        page.click("button.menu")
        page.wait_for_timeout(250)
        assert page.locator(".sidebar").bounding_box()["x"] >= 0
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 24, 28)"
    finally:
        context.close()
