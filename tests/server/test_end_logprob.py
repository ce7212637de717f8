"""An end-of-generation token keeps its logprob (with empty text) when it is the token
generated: on both faces, and with echo, so a scorer that drops the last entry (the
generated token, as lm-evaluation-harness does) drops that one and not the prompt's.

The tiny model's answers rarely end by themselves, so the model here counts a chosen
token as its end (``LoadedModel.is_end``, in-process runner): the scheduler's path
from the sampled end token to both faces is the real one.
"""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from liveserver import free_port, serve
from locallama.engine.model import LoadedModel
from runtimes import local_runtime
from tinymodel import write_tiny_gguf

PROMPT = "The cat sat on the"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("end")
    runtime = local_runtime(home, ("tiny", write_tiny_gguf(home / "t.gguf")),
                            host="127.0.0.1", port=free_port(), runner="inprocess")
    patch = pytest.MonkeyPatch()
    patch.setattr(LoadedModel, "is_end", lambda self, token: True)  # every token ends
    with serve(runtime, runtime.settings) as base:
        yield base
    patch.undo()
    runtime.close()


def test_completions_echo_keeps_the_end_token_last_with_empty_text(url):
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    answer = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, echo=True,
                                       logprobs=1, temperature=0)
    choice = answer.choices[0]
    prompt_tokens = answer.usage.prompt_tokens
    assert choice.finish_reason == "stop" and choice.text == PROMPT
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == prompt_tokens + 1  # every prompt token, then the end
    assert logprobs.tokens[-1] == "" and logprobs.token_logprobs[-1] < 0
    assert "".join(logprobs.tokens) == PROMPT


def test_chat_and_ollama_generate_carry_it_too(url):
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user",
                                                                   "content": "Hi"}],
                                          logprobs=True, max_tokens=3)
    content = chat.choices[0].logprobs.content
    assert chat.choices[0].message.content == "" and len(content) == 1
    assert content[0].token == "" and content[0].bytes == []
    lines = httpx.post(url + "/api/generate", json={
        "model": "tiny", "prompt": PROMPT, "raw": True, "logprobs": True, "stream": False,
        "options": {"num_predict": 3}}, timeout=60).json()
    assert lines["response"] == "" and lines["eval_count"] == 0
    assert [t["token"] for t in lines["logprobs"]] == [""]
