"""serve --ray on a local Ray cluster (4 logical CPUs on this 2-core box): two replicas
of the tiny model behind the ingress, the Ollama and OpenAI clients through it, the
spread of requests, a conversation's second turn on its replica, ps rows per replica,
the model copied into a node's own store, and a replica killed mid-stream.

One cluster for the module (starting Ray Serve takes ~30 s); the kill test runs last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from liveserver import free_port
from locallama.store.store import Store
from runtimes import local_runtime
from waiting import poll

pytest.importorskip("ray.serve", reason="the cluster extra is not installed "
                                        "(pip install 'locallama[cluster]')")

TIMEOUT = httpx.Timeout(120.0)
SYSTEM = ("You are a patient assistant who answers questions about gardening, cooking, "
          "and the weather in short sentences. ") * 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[dict[str, Any]]:
    from locallama.cluster.start import start, stop

    home = tmp_path_factory.mktemp("head")
    local_runtime(home, ("tiny", tiny_gguf)).close()
    node_home = tmp_path_factory.mktemp("node")
    env = {"LOCALLAMA_HOME": str(home), "LOCALLAMA_MODELS": str(home / "models"),
           "LOCALLAMA_HOST": f"127.0.0.1:{free_port()}", "LOCALLAMA_NUM_PARALLEL": "2",
           "LOCALLAMA_CLUSTER_MIN_REPLICAS": "2", "LOCALLAMA_CLUSTER_MAX_REPLICAS": "2",
           "LOCALLAMA_CLUSTER_MODELS": "tiny", "LOCALLAMA_CLUSTER_NODE_HOME": str(node_home)}
    running = start(None, env, num_cpus=4)
    try:
        poll(lambda: len(replicas(running.url)) == 2, "both replicas report", timeout=60)
        yield {"url": running.url, "node_home": node_home}
    finally:
        stop(running)


def replicas(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/api/cluster", timeout=TIMEOUT).json()["replicas"]


def chat(url: str, messages: list[dict[str, str]], num_predict: int = 8) -> dict[str, Any]:
    r = httpx.post(url + "/api/chat", timeout=TIMEOUT, json={
        "model": "tiny", "messages": messages, "stream": False,
        "options": {"num_predict": num_predict, "temperature": 0}})
    assert r.status_code == 200, r.text
    return r.json()


def test_both_faces_answer_through_the_ingress(cluster):
    import ollama
    import openai

    url = cluster["url"]
    client = ollama.Client(host=url)
    answer = client.chat(model="tiny", messages=[{"role": "user", "content": "hello"}],
                         options={"num_predict": 5})
    assert answer.done and answer.eval_count == 5
    parts = list(client.generate(model="tiny", prompt="once upon", stream=True,
                                 options={"num_predict": 5}))
    assert parts[-1].done and parts[-1].eval_count == 5
    assert [m.model for m in client.list().models] == ["tiny:latest"]

    oa = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    completion = oa.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert completion.usage.completion_tokens == 4
    stream = oa.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                        max_tokens=4, stream=True)
    finishes = [c.choices[0].finish_reason for c in stream if c.choices]
    assert finishes[-1] == "length"


def test_errors_keep_their_status_and_one_line_through_the_replicas(cluster):
    url = cluster["url"]
    bad = httpx.post(url + "/api/chat", timeout=TIMEOUT, json={
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False,
        "options": {"top_k": -5}})  # refused by the replica's runtime
    assert bad.status_code == 400 and bad.json()["error"] == "top_k must not be negative"
    long = httpx.post(url + "/api/generate", timeout=TIMEOUT, json={
        "model": "tiny", "prompt": "word " * 3000, "stream": False, "truncate": False})
    assert long.status_code == 400 and "longer than the context" in long.json()["error"]
    assert "\n" not in long.json()["error"]
    missing = httpx.post(url + "/v1/chat/completions", timeout=TIMEOUT, json={
        "model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    # a request's keep_alive 0 does not unload a replica's model (Serve scales it)
    done = httpx.post(url + "/api/generate", timeout=TIMEOUT, json={
        "model": "tiny", "prompt": "hi", "stream": False, "keep_alive": 0,
        "options": {"num_predict": 2}})
    assert done.status_code == 200
    assert all(r["loaded"] for r in replicas(url))


def test_requests_spread_over_both_replicas(cluster):
    url = cluster["url"]
    before = {r["replica"]: r["served"] for r in replicas(url)}
    errors: list[Exception] = []

    def one(i: int) -> None:
        try:
            chat(url, [{"role": "user", "content": f"question number {i} about soup"}], 24)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    def served() -> dict[str, int]:
        return {r["replica"]: r["served"] - before.get(r["replica"], 0) for r in replicas(url)}

    poll(lambda: sum(served().values()) >= 8, "the directory counts 8 requests")
    assert all(n > 0 for n in served().values()), served()


def test_a_second_turn_lands_on_the_replica_that_holds_it(cluster):
    url = cluster["url"]
    for i in range(4):  # a wrong replica would show in one of four with odds 15/16
        first = [{"role": "system", "content": f"{i} {SYSTEM}"},  # no prefix shared
                 {"role": "user", "content": f"conversation {i}: what grows in May?"}]
        one = chat(url, first)
        two = chat(url, [*first, one["message"], {"role": "user", "content": "and in June?"}])
        # the slot held the first turn: only the reply and the new question are evaluated
        assert two["prompt_eval_count"] < one["prompt_eval_count"] / 2, (one, two)


def test_ps_shows_a_row_per_replica_with_its_node(cluster):
    rows = httpx.get(cluster["url"] + "/api/ps", timeout=TIMEOUT).json()["models"]
    assert sorted(r["name"] for r in rows) == ["tiny:latest", "tiny:latest"]
    assert len({r["replica"] for r in rows}) == 2
    assert all(r["node"] for r in rows)
    env = {**os.environ, "LOCALLAMA_HOST": cluster["url"].removeprefix("http://")}
    shown = subprocess.run([sys.executable, "-m", "locallama", "ps"], env=env, text=True,
                           capture_output=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.split()[-2:] == ["REPLICA", "NODE"] and len(lines) == 2


def test_a_node_without_the_model_copies_it_from_the_head(cluster):
    store = Store(cluster["node_home"] / "models")
    assert store.exists("tiny")
    record = store.get("tiny")
    assert all(store.blobs.verify(d) for d in record.manifest.digests())


def test_a_killed_replica_ends_its_stream_cleanly_and_the_service_answers(cluster):
    import ray

    url = cluster["url"]
    body = {"model": "tiny", "messages": [{"role": "user", "content": "tell me everything"}],
            "options": {"num_predict": 100_000, "num_ctx": 256}}
    with httpx.stream("POST", url + "/api/chat", json=body, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert not first["done"]
        busy: list[dict[str, Any]] = []

        def found() -> bool:
            busy[:] = [r for r in replicas(url) if r["ongoing"] > 0]
            return len(busy) == 1

        poll(found, "one replica shows the stream in flight")
        ray.kill(ray.get_actor(busy[0]["actor"], namespace="serve"), no_restart=False)
        rest = [json.loads(line) for line in lines if line]
    assert rest, "the stream ended without a line"
    assert "error" in rest[-1] and "stopped" in rest[-1]["error"], rest[-1]
    assert "Traceback" not in rest[-1]["error"]
    assert not any(line.get("done") for line in rest)
    # the service still answers, on the replica left (or the one Serve starts again)
    for _ in range(3):
        assert chat(url, [{"role": "user", "content": "still there?"}])["done"]
