"""GET /metrics after real requests to a LocalRuntime with the tiny model."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fakeruntime import FakeRuntime
from liveserver import serve


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_after_a_few_requests(server):
    url = server.url
    for _ in range(3):
        assert httpx.get(url + "/api/tags").status_code == 200
    assert httpx.get(url + "/api/nope/at/all").status_code == 404
    zero = "sha256:" + "0" * 64
    assert httpx.head(f"{url}/api/blobs/{zero}").status_code == 404
    answers = [httpx.post(url + "/api/generate", timeout=120, json={
        "model": "tiny", "prompt": f"Count {i}", "stream": False, "keep_alive": -1,
        "options": {"num_predict": 6, "temperature": 0, "num_ctx": 256}}).json()
        for i in range(2)]
    chat = httpx.post(url + "/v1/chat/completions", timeout=120, json={
        "model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
        "temperature": 0}).json()

    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    requests = "locallama_http_requests_total"
    assert _value(samples, requests, route="/api/tags", method="GET", status="200") == 3
    assert _value(samples, requests, route="<unmatched>", method="GET", status="404") == 1
    assert _value(samples, requests, route="/api/blobs/{digest}", method="HEAD",
                  status="404") == 1
    assert _value(samples, requests, route="/api/generate", method="POST", status="200") == 2
    assert _value(samples, requests, route="/v1/chat/completions", method="POST",
                  status="200") == 1
    assert not any(dict(labels).get("route", "").startswith("/api/nope")
                   for _, labels in samples)  # raw paths never become labels
    assert _value(samples, "locallama_http_request_duration_seconds_count",
                  route="/api/tags") == 3

    prompt = sum(a["prompt_eval_count"] for a in answers) + chat["usage"]["prompt_tokens"]
    generated = sum(a["eval_count"] for a in answers) + chat["usage"]["completion_tokens"]
    model = "tiny:latest"
    # prompt_eval_count counts what was evaluated now; the metric counts whole prompts
    assert _value(samples, "locallama_prompt_tokens_total", model=model) >= prompt > 0
    assert _value(samples, "locallama_generated_tokens_total", model=model) == generated
    for histogram in ("locallama_time_to_first_token_seconds", "locallama_queue_wait_seconds"):
        assert _value(samples, histogram + "_count", model=model) == 3, histogram
        assert _value(samples, histogram + "_sum", model=model) > 0
    assert _value(samples, "locallama_generation_tokens_per_second_count", model=model) >= 2

    assert _value(samples, "locallama_loaded_models") >= 1
    assert _value(samples, "locallama_loaded_model_bytes", model=model) > 0
    assert _value(samples, "locallama_queue_length", model=model) == 0
    httpx.post(url + "/api/generate", json={"model": "tiny", "keep_alive": 0}, timeout=60)


def test_each_app_counts_only_its_own_requests(tmp_path):
    with serve(FakeRuntime(), tmp=tmp_path / "a") as first, \
            serve(FakeRuntime(), tmp=tmp_path / "b") as second:
        httpx.get(first + "/api/tags")
        httpx.get(first + "/api/tags")
        httpx.get(second + "/api/tags")
        counts = [_value(_samples(httpx.get(u + "/metrics").text),
                         "locallama_http_requests_total", route="/api/tags", method="GET",
                         status="200") for u in (first, second)]
    assert counts == [2, 1]
