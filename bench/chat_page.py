"""The chat page's figures in headless Debian chromium: bytes on the first load (gzip),
time to interactive, and the browser stream's overhead against httpx.

A ``locallama serve`` over the tiny fixture model (tests/tinymodel.py) is started in a
temp folder.  Page weight is the sum of the transferred bytes the browser's
Resource Timing reports for the navigation and every resource of a first load (an
empty cache); time to interactive is from navigation start to the chat's model list
being filled (the page usable), with DOMContentLoaded beside it.  The stream
overhead: the same chat request (greedy, seeded, ``--tokens`` tokens) streamed by
httpx and by the page, rounds alternating, tokens/s as each client sees it (the
final chunk's eval_count over the time from sending to the last line); the page is
measured twice, its api.stream alone and the whole chat view (markdown rendering included, until the
speed line shows).

    .venv/bin/python bench/chat_page.py [--rounds 3] [--tokens 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "web"), str(ROOT / "tests")]

from webhelpers import CHROMIUM, CHROMIUM_ARGS, start_ui_server  # noqa: E402

from tinymodel import write_tiny_gguf  # noqa: E402

OPTIONS = {"temperature": 0, "seed": 1}


def httpx_rate(url: str, tokens: int) -> float:
    body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "options": {**OPTIONS, "num_predict": tokens}}
    began = time.perf_counter()
    with httpx.stream("POST", url + "/api/chat", json=body, timeout=120) as response:
        for line in response.iter_lines():
            chunk = json.loads(line)
    return chunk["eval_count"] / (time.perf_counter() - began)


PAGE_STREAM = """async (tokens) => {
  const began = performance.now();
  const last = await window.locallama.api.stream("/api/chat", {model: "tiny", stream: true,
      messages: [{role: "user", content: "hi"}],
      options: {temperature: 0, seed: 1, num_predict: tokens}}, (line) => {});
  return last.eval_count / ((performance.now() - began) / 1000);
}"""


def page_view_rate(page, tokens: int) -> float:
    """Through the chat view: Enter to the speed line showing (the page's context
    count, a /tokenize call, included)."""
    page.click("text=+ New chat")
    page.fill("[data-testid=settings] input >> nth=4", str(tokens))
    page.fill("[data-testid=settings] input >> nth=0", "0")
    page.fill("[data-testid=settings] input >> nth=3", "1")
    page.fill("[data-testid=input]", "hi")
    began = page.evaluate("performance.now()")
    page.press("[data-testid=input]", "Enter")
    page.wait_for_selector("[data-testid=stats]", timeout=120_000)
    done = page.evaluate("performance.now()")
    count = int(page.inner_text("[data-testid=stats]").split(" tokens ·")[0].split("· ")[-1])
    return count / ((done - began) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=400)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp())
    gguf = write_tiny_gguf(tmp / "tiny.gguf")
    with start_ui_server(tmp, gguf, {"tiny": ""}) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        loads = []
        for _ in range(args.rounds):
            context = browser.new_context(bypass_csp=True)  # an empty cache
            page = context.new_page()
            page.goto(server.page_url)
            page.wait_for_function("[...document.querySelectorAll('[data-testid=model] option')]"
                                   ".some(o => o.value === 'tiny:latest')")
            loads.append(page.evaluate("""() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const res = performance.getEntriesByType('resource');
              return {bytes: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
                      decoded: nav.decodedBodySize + res.reduce((n, r) => n + r.decodedBodySize, 0),
                      files: res.length + 1, dcl: nav.domContentLoadedEventEnd,
                      tti: performance.now()};
            }"""))
            context.close()
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        page.goto(server.page_url)
        page.wait_for_selector("[data-testid=input]")
        page.click("[data-testid=settings] summary")
        httpx_rate(server.url, 8)  # load the model
        rates: dict[str, list[float]] = {"httpx": [], "page api.stream": [], "page chat view": []}
        for _ in range(args.rounds):
            rates["httpx"].append(httpx_rate(server.url, args.tokens))
            rates["page api.stream"].append(page.evaluate(PAGE_STREAM, args.tokens))
            rates["page chat view"].append(page_view_rate(page, args.tokens))
        browser.close()
    load = loads[-1]
    print(f"first load: {load['bytes']} bytes transferred ({load['decoded']} decoded) in "
          f"{load['files']} files")
    tti = statistics.median(x["tti"] for x in loads)
    dcl = statistics.median(x["dcl"] for x in loads)
    print(f"time to interactive (model list filled): median {tti:.0f} ms; "
          f"DOMContentLoaded {dcl:.0f} ms")
    base = statistics.median(rates["httpx"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:16s} {median:8.1f} tokens/s  ratio to httpx {median / base:.3f}  "
              f"({', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
