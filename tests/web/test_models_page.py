"""The Models and Measurements views in headless chromium against a live ``locallama
serve`` on tiny models: list/show/ps, unload, delete after a confirmation, a pull from
the local fake registry with its bar reaching 100%, charts drawn from result files,
and strangers' text (a LICENSE, a SYSTEM, a model name in a result file) as text.

Fixtures (``chromium``, ``page``, ``start_ui_server``, ``screenshot``, ``HOSTILE``)
are tests/web/conftest.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from webhelpers import HOSTILE, screenshot, start_ui_server

from fakeregistry import fake_registry
from resultfiles import write_results
from tinymodel import write_tiny_gguf

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install "
    "'playwright>=1.45,<2')").expect


@pytest.fixture(scope="module")
def served(chromium, tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator:
    """A serve over tiny, thinker and hostile, pulling from a local fake registry that
    holds ``fresh`` (another model file: a real download), its results folder
    LOCALLAMA_HOME/results."""
    tmp = tmp_path_factory.mktemp("models-page")
    fresh = write_tiny_gguf(tmp / "fresh.gguf", seed=7)
    with fake_registry() as registry:
        registry.add_model("library/fresh:latest", fresh, params={"temperature": 0.5})
        with start_ui_server(tmp, tiny_gguf, LOCALLAMA_REGISTRY=registry.url) as server:
            server.results = tmp / "home" / "results"
            yield server


def _open(page, server, view: str) -> None:
    page.goto(server.page_url + "#" + view)
    page.wait_for_selector(f"#view-{view} section")


def _real_errors(page) -> list[str]:
    """Uncaught errors and console errors, less the browser's note on a 4xx answer
    (the page shows those itself)."""
    return [e for e in page.errors if "Failed to load resource" not in e]


def _format_bytes(page, n: int) -> str:
    """The page's own rendering of a byte count (models.js's formatBytes)."""
    return page.evaluate("async (n) => (await import('./models.js')).formatBytes(n)", n)


def _tags(server) -> dict[str, dict]:
    return {m["name"]: m for m in httpx.get(server.url + "/api/tags").json()["models"]}


def test_the_models_view_lists_the_store_and_shows_details(page, served):
    tags = _tags(served)
    _open(page, served, "models")
    rows = page.locator("[data-testid=models-table] tbody tr")
    rows.first.wait_for()
    shown = {r.get_attribute("data-model"): r for r in rows.all()}
    assert set(shown) == set(tags)
    tiny = shown["tiny:latest"]
    assert tiny.locator(".model-quant").inner_text() == \
        tags["tiny:latest"]["details"]["quantization_level"]
    size = tags["tiny:latest"]["size"]
    assert tiny.locator(".model-size").inner_text() == _format_bytes(page, size)

    tiny.locator("button.details").click()
    details = page.locator("[data-testid=model-details]")
    details.locator(".details-capabilities").wait_for()
    show = httpx.post(served.url + "/api/show", json={"model": "tiny"}).json()
    context = next(v for k, v in show["model_info"].items() if k.endswith(".context_length"))
    assert details.locator(".details-context").inner_text() == str(context)
    assert "completion" in details.locator(".details-capabilities").inner_text()
    assert details.locator(".details-quant").inner_text() == \
        show["details"]["quantization_level"]

    # a phone-sized screen: nothing runs off to the side
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert not _real_errors(page)


def test_unload_takes_a_model_off_the_loaded_list(page, served):
    httpx.post(served.url + "/api/generate", json={"model": "tiny", "keep_alive": "10m"},
               timeout=60).raise_for_status()  # an empty prompt loads it
    _open(page, served, "models")
    loaded = page.locator("[data-testid=loaded-table] tr[data-model='tiny:latest']")
    loaded.wait_for()
    until = loaded.locator("td").nth(3).inner_text()
    assert until.startswith("in ") and until.endswith("min"), until
    loaded.locator("button.unload").click()
    page.locator("[data-testid=no-loaded]").wait_for()
    assert httpx.get(served.url + "/api/ps").json()["models"] == []
    assert not _real_errors(page)


def test_delete_asks_first(page, served):
    httpx.post(served.url + "/api/copy",
               json={"source": "tiny", "destination": "doomed"}).raise_for_status()
    _open(page, served, "models")
    row = page.locator("[data-testid=models-table] tr[data-model='doomed:latest']")
    row.locator("button.delete").click()
    row.get_by_role("alertdialog").wait_for()
    row.locator("button.cancel-delete").click()  # changed our mind: nothing happens
    assert "doomed:latest" in _tags(served)
    row.locator("button.delete").click()
    row.locator("button.confirm-delete").click()
    row.wait_for(state="detached")
    assert "doomed:latest" not in _tags(served) and "tiny:latest" in _tags(served)
    assert not _real_errors(page)


def test_pull_shows_progress_to_100_percent_and_errors_as_text(page, served):
    httpx.post(served.url + "/api/generate", json={"model": "thinker", "keep_alive": "10m"},
               timeout=60).raise_for_status()  # loaded, for the screenshot
    _open(page, served, "models")
    page.fill("#pull-name", "fresh")
    page.click("button.pull")
    progress = page.locator("[data-testid=pull-progress]")
    expect(progress.locator(".pull-status")).to_contain_text("success", timeout=30_000)
    expect(progress.locator(".pull-percent")).to_have_text("100%")
    assert progress.locator("progress").evaluate("p => p.value") == 100
    size = _tags(served)["fresh:latest"]["size"]
    shown = _format_bytes(page, size)
    assert progress.locator(".pull-status").inner_text().endswith(f"{shown} of {shown})")
    page.locator("[data-testid=models-table] tr[data-model='fresh:latest']").wait_for()
    assert "fresh:latest" in _tags(served)
    page.locator("[data-testid=loaded-table] tr[data-model='thinker:latest']").wait_for()
    screenshot(page, "models-page")

    # a name the registry lacks: the server's error, as text, and no new row
    page.fill("#pull-name", "missing-" + "x" * 8)
    page.click("button.pull")
    error = progress.locator(".pull-error")
    error.wait_for()
    assert error.inner_text()
    assert not _real_errors(page)


def test_measurements_draw_charts_from_result_files(page, served):
    write_results(served.results)
    _open(page, served, "measure")
    page.locator(".measure-charts figure").first.wait_for()
    charts = {f.get_attribute("data-chart"): f for f in page.locator("figure.chart").all()}
    assert {"tradeoff", "size", "pp", "tg", "perplexity", "task-arc_challenge"} <= set(charts)
    pp = charts["pp"].locator("g.bar")
    assert pp.count() == 2
    values = [float(b.get_attribute("data-value")) for b in pp.all()]
    assert values == [400, 350]
    widths = [float(b.locator("rect").get_attribute("width")) for b in pp.all()]
    assert widths[0] > widths[1] > 0  # bars to scale
    assert charts["tradeoff"].locator("circle").count() == 2
    # the q8 copy has no eval: its task bar is absent, its label says n/a
    task = charts["task-arc_challenge"].locator("g.bar")
    assert task.nth(0).get_attribute("data-value") == "30"
    assert task.nth(1).locator("rect").count() == 0
    assert "n/a" in task.nth(1).text_content()

    # unticking a file redraws without it
    page.click(".measure-files summary")
    page.get_by_label("ppl-q8.json").uncheck()
    expect(page.locator("[data-chart=perplexity] rect")).to_have_count(1)
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert not _real_errors(page)


def test_strangers_text_renders_as_text(page, served):
    # a result file naming its model with markup, and a model whose SYSTEM and LICENSE
    # hold it: all shown as the characters they are, nothing run, no element made
    write_results(served.results, q8_name=HOSTILE)
    _open(page, served, "measure")
    page.locator(".measure-charts figure").first.wait_for()
    assert HOSTILE in page.locator(".measure-legend").inner_text()
    assert page.locator(f"[data-chart=pp] g.bar[data-label='{HOSTILE}']").count() == 1

    _open(page, served, "models")
    page.locator("[data-testid=models-table] tr[data-model='hostile:latest'] "
                 "button.details").click()
    details = page.locator("[data-testid=model-details]")
    details.locator(".details-license").wait_for()
    assert details.locator(".details-license").inner_text().strip() == HOSTILE
    assert details.locator(".details-system").inner_text().strip() == HOSTILE
    page.fill("#pull-name", HOSTILE)
    page.click("button.pull")
    page.locator(".pull-error").wait_for()

    assert page.locator("#app img, #app script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert not _real_errors(page)
