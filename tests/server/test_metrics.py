"""GET /metrics after real requests to a LocalRuntime with the tiny model."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakeruntime import FakeRuntime
from liveserver import serve
from tinymodel import write_tiny_gguf


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


def test_odd_methods_share_one_label_so_clients_cannot_grow_the_series(tmp_path):
    with serve(FakeRuntime(), tmp=tmp_path) as url:
        for i in range(5):
            assert httpx.request(f"XABC{i}", url + "/api/tags").status_code == 405
        httpx.request("XYZ", url + "/no/such/path")
        samples = _samples(httpx.get(url + "/metrics").text)
    requests = "locallama_http_requests_total"
    assert _value(samples, requests, route="/api/tags", method="other", status="405") == 5
    assert _value(samples, requests, route="<unmatched>", method="other", status="404") == 1
    methods = {dict(labels).get("method") for name, labels in samples if name == requests}
    assert methods <= {"GET", "other"}, methods


def test_a_client_that_left_is_logged_and_counted_as_499_not_500(server, tmp_path, caplog):
    """nginx's 499 "client closed request": the server did not fail, the client left."""
    url = server.url
    gguf = write_tiny_gguf(tmp_path / "slow.gguf", n_ctx_train=16384)
    created = httpx.post(url + "/api/create", timeout=120, json={
        "model": "slow", "files": {"slow.gguf": _upload(url, gguf)},
        "parameters": {"num_ctx": 16384}})
    assert created.status_code == 200, created.text
    try:
        with caplog.at_level(logging.INFO, logger="locallama.access"):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url + "/api/generate", timeout=1.5, json={
                    "model": "slow", "prompt": "Tell me everything", "stream": False,
                    "options": {"num_predict": 100_000, "temperature": 0}})
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _generate_records(caplog):
                time.sleep(0.02)
        [record] = _generate_records(caplog)
        assert record.request["status"] == 499
        samples = _samples(httpx.get(url + "/metrics").text)
        requests = "locallama_http_requests_total"
        assert _value(samples, requests, route="/api/generate", method="POST", status="499") == 1
        assert (requests, (("method", "POST"), ("route", "/api/generate"),
                           ("status", "500"))) not in samples
    finally:
        httpx.request("DELETE", url + "/api/delete", json={"model": "slow"}, timeout=60)


def _upload(url: str, path) -> str:
    import hashlib

    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.post(f"{url}/api/blobs/{digest}", content=data, timeout=60).status_code == 201
    return digest


def _generate_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "locallama.access"
            and r.request["route"] == "/api/generate"]
