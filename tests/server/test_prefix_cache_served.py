"""Prompt tokens reused from the KV cache, as the faces report them: OpenAI's
``usage.prompt_tokens_details.cached_tokens`` and the counters of ``/api/ps``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from liveserver import free_port, serve
from runtimes import local_runtime

SYSTEM = ("You are the catalogue of the town library. Answer in one short sentence, name "
          "the shelf, and say when a book is out on loan. ") * 2
GREEDY = {"temperature": 0, "max_tokens": 4}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path):
    runtime = local_runtime(tmp_path_factory.mktemp("prefix"), ("tiny", tiny_gguf),
                            host="127.0.0.1", port=free_port(), num_parallel=2)
    with serve(runtime, runtime.settings) as base:
        yield base
    runtime.close()


def ask(client: OpenAI, question: str):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return client.chat.completions.create(model="tiny", messages=messages, **GREEDY)


def test_a_shared_system_prompt_is_reported_as_cached_tokens(url):
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    first = ask(client, "Where is the atlas?")
    assert first.usage.prompt_tokens_details.cached_tokens == 0  # a fresh model
    second = ask(client, "Is the dog book in?")
    usage = second.usage
    cached = usage.prompt_tokens_details.cached_tokens
    # the system prompt (and the template around it) came from the cache; only the
    # new question was evaluated
    assert 100 < cached < usage.prompt_tokens
    assert usage.prompt_tokens - cached < 40  # the question, byte by byte in this vocabulary

    [row] = httpx.get(url + "/api/ps").json()["models"]
    assert row["prompt_cached_count"] == cached
    assert row["prompt_eval_count"] == first.usage.prompt_tokens + usage.prompt_tokens - cached
    assert row["prompt_shared_count"] >= 0
    assert row["kv_cache_type"] == "f16"
