"""Images in the chat page: attached to a message for a model that sees (a tiny model
with a tiny projector layer), sent as Ollama's ``images``, refused for one that does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from webhelpers import UiServer, start_ui_server

from tinyvision import png_bytes, write_tiny_projector


@pytest.fixture(scope="module")
def vision_server(chromium, tmp_path_factory, tiny_gguf) -> UiServer:
    tmp = tmp_path_factory.mktemp("chat-vision")
    projector = write_tiny_projector(tmp / "mmproj.gguf")
    with start_ui_server(tmp, tiny_gguf, {"tiny": "", "seer": f"FROM {projector}\n"}) as server:
        yield server


def open_chat(page, server: UiServer, model: str) -> None:
    page.goto(server.page_url)
    page.wait_for_selector("[data-testid=input]")
    page.wait_for_function("[...document.querySelectorAll('[data-testid=model] option')]"
                           f".some(o => o.value === '{model}:latest')")
    page.select_option("[data-testid=model]", f"{model}:latest")
    # the page has the chosen model's /api/show (its capabilities decide about images)
    page.wait_for_function(
        "([name, sees]) => document.querySelector('[data-testid=model]').value === name"
        " && (document.querySelector('[data-testid=model-info]')?.textContent || '')"
        ".includes('completion') === true && (document.querySelector("
        "'[data-testid=model-info]').textContent.includes('vision') === sees)",
        arg=[f"{model}:latest", model == "seer"])


def test_an_image_goes_to_a_model_that_sees(page, vision_server, tmp_path: Path) -> None:
    cat = tmp_path / "cat.png"
    cat.write_bytes(png_bytes(1))
    open_chat(page, vision_server, "tiny")
    page.set_input_files("[data-testid=attach]", [str(cat)])
    page.wait_for_selector("[data-testid=notice] >> text=images are not supported by tiny")
    assert page.locator(".files.pending li").count() == 0

    # seer's show must say "vision", even when tiny's show answers after seer was picked
    # (the page once filed that late answer under seer)
    open_chat(page, vision_server, "seer")
    page.set_input_files("[data-testid=attach]", [str(cat)])
    page.wait_for_selector(".files.pending >> text=cat.png")
    with page.expect_request(lambda r: r.url.endswith("/api/chat")) as sent:
        page.fill("[data-testid=input]", "what is this")
        page.press("[data-testid=input]", "Enter")
    body = sent.value.post_data_json
    assert body["messages"][-1]["images"] and body["messages"][-1]["content"] == "what is this"
    page.wait_for_selector("[data-testid=stats]", timeout=30_000)
    assert page.locator("[data-role=user] .files li").all_inner_texts() == ["cat.png"]
    assert not page.locator("[data-role=assistant] .error").count()
