"""Fixtures for the chat page's browser tests (helpers in webhelpers.py).

Every test here skips (with the reason) when ``/usr/bin/chromium`` or Playwright is
missing; nothing downloads a browser.

- ``chromium``: one headless browser for the session.
- ``page``: a fresh browser context (empty IndexedDB and localStorage) and page; the
  page's console errors are collected on ``page.errors`` (uncaught exceptions too).
- ``ui_server``: one ``locallama serve`` subprocess for the module, its store holding
  ``tiny`` (ChatML), ``thinker`` (a thinking template) and ``hostile`` (SYSTEM and
  LICENSE holding ``HOSTILE``); ``ui_server.url`` is the base URL, the page is at
  ``ui_server.page_url`` (``/ui/``; the Models view at ``/ui/#models``).
- ``webhelpers.start_ui_server(tmp, gguf, models, **env)``: the same with other
  models or LOCALLAMA_* settings (an API key, num_parallel); a ``with`` block stops it.
- ``webhelpers.screenshot(page, name)``: saves ``docs/<name>.png`` (the README's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webhelpers import CHROMIUM, CHROMIUM_ARGS, UiServer, start_ui_server


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """Headless Debian chromium through Playwright (skips when either is missing)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install 'playwright>=1.45,<2')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium) -> Iterator:
    """A fresh context and page (1000x700); ``page.errors`` collects console errors
    and uncaught exceptions.  The page's Content-Security-Policy is bypassed: the
    tests' string predicates need eval, and the hostile-text tests must show the
    sanitizing alone keeps script out (the CSP is a second wall, checked apart)."""
    context = chromium.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


@pytest.fixture(scope="module")
def ui_server(chromium, tmp_path_factory: pytest.TempPathFactory,
              tiny_gguf: Path) -> Iterator[UiServer]:
    """One ``locallama serve`` over DEFAULT_MODELS for the module (after ``chromium``,
    so a missing browser skips before a server starts)."""
    with start_ui_server(tmp_path_factory.mktemp("ui"), tiny_gguf) as server:
        yield server
