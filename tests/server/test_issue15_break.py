"""Faults found by trying issue 15's new routes as a new user would, with the official
clients, and with inputs their authors did not test.  Each test is one confirmed fault:
fixed (plain test) or still open (``xfail(strict=True)`` with the reason).

* A lone surrogate in an Anthropic message's plain-string ``content`` was a 500
  ("internal error: validation error for TextBlock") on /v1/messages and
  /v1/messages/count_tokens; every other text field was a 400 naming it.
* ``/tokenize``, ``/detokenize`` and ``/infill`` refused ``curl -d '{...}'`` (curl's
  form Content-Type) with "the request body must be a JSON object", the misleading
  message issue 15 names for /v1; the other faces read any body as JSON.
* A tool call cut at max_tokens was answered as a finished call: finish_reason
  "tool_calls" (OpenAI chat) and stop_reason "tool_use" (Anthropic), with arguments
  ``{}`` the model never wrote; the Responses face already said ``incomplete``.
* ``tool_choice`` "required" (or a named function) with no tools was dropped on the
  OpenAI chat face and Anthropic's ``{"type": "any"}`` too: a 200 with plain text
  where the client asked to force a call (the Responses face already refused it).
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from liveserver import free_port, serve
from locallama.engine.job import Job, Piece
from locallama.engine.scheduler import Scheduler
from runtimes import add_model, local_runtime
from thinkers import thinking_runtime
from tinymodel import write_fim_gguf

CUT_CALL = ["<tool_call>", '\n{"name": "get_weather", ', '"arguments": {"city": "Pa']
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def fim_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path):
    """A live server holding "tiny" (no FIM tokens) and "fim" (FIM tokens)."""
    home = tmp_path_factory.mktemp("break15")
    runtime = local_runtime(home, ("tiny", tiny_gguf), host="127.0.0.1", port=free_port())
    add_model(runtime, "fim", write_fim_gguf(home / "fim.gguf"))
    with serve(runtime, runtime.settings) as url:
        yield url
    runtime.close()


# -- a lone surrogate in Anthropic's string content ---------------------------------------


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_anthropic_lone_surrogate_in_string_content_is_a_400(server, path):
    body = ('{"model": "tiny", "max_tokens": 2, '
            '"messages": [{"role": "user", "content": "a\\ud800b"}]}')
    r = httpx.post(server.url + path, content=body,
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "messages[0].content" in error["message"] and "surrogate" in error["message"]


# -- the llama-server routes read any body as JSON -----------------------------------------


@pytest.mark.parametrize(("path", "body"), [
    ("/tokenize", '{"model": "tiny", "content": "hello"}'),
    ("/detokenize", '{"model": "tiny", "tokens": [300, 301]}'),
    ("/infill", '{"model": "fim", "input_prefix": "def f(", "input_suffix": ")", '
                '"n_predict": 2}'),
])
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded",
                                          "text/plain"])
def test_llama_server_routes_read_json_whatever_the_content_type(fim_server, path, body,
                                                                 content_type):
    headers = {"content-type": content_type} if content_type else {}
    r = httpx.post(fim_server + path, content=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert ("tokens" in r.json()) if path == "/tokenize" else True
    assert ("content" in r.json()) if path != "/tokenize" else True


# -- a tool call cut at max_tokens -----------------------------------------------------------


def _cut_at_length(monkeypatch, pieces: list[str]) -> None:
    """Every in-process scheduler answers ``pieces`` and stops at the token limit."""

    def submit(self, job: Job):
        job.stats.done_reason = "length"
        job.stats.eval_count = len(pieces)
        return (Piece(p) for p in pieces)

    monkeypatch.setattr(Scheduler, "submit", submit)


@pytest.fixture
def cut_server(tmp_path: Path, tiny_gguf: Path, monkeypatch):
    runtime = thinking_runtime(tmp_path, tiny_gguf, host="127.0.0.1", port=free_port())
    _cut_at_length(monkeypatch, CUT_CALL)
    with serve(runtime, runtime.settings) as url:
        yield url
    runtime.close()


def test_openai_chat_tool_call_cut_at_max_tokens_finishes_with_length(cut_server):
    client = openai.OpenAI(base_url=cut_server + "/v1", api_key="unused", max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    kwargs = {"model": "thinker", "messages": [{"role": "user", "content": "weather?"}],
              "max_tokens": 3, "tools": tools}
    whole = client.chat.completions.create(**kwargs)
    assert whole.choices[0].finish_reason == "length"
    finishes = [c.choices[0].finish_reason
                for c in client.chat.completions.create(**kwargs, stream=True)
                if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]


def test_anthropic_tool_use_cut_at_max_tokens_stops_with_max_tokens(cut_server):
    client = anthropic.Anthropic(base_url=cut_server, api_key="unused", max_retries=0)
    kwargs = {"model": "thinker", "max_tokens": 3,
              "messages": [{"role": "user", "content": "weather?"}],
              "tools": [{"name": "get_weather", "input_schema": WEATHER}]}
    assert client.messages.create(**kwargs).stop_reason == "max_tokens"
    events = list(client.messages.create(**kwargs, stream=True))
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "max_tokens"


def test_responses_function_call_cut_at_max_output_tokens_is_incomplete(cut_server):
    """What held: the Responses face already said so."""
    client = openai.OpenAI(base_url=cut_server + "/v1", api_key="unused", max_retries=0)
    r = client.responses.create(model="thinker", input="weather?", max_output_tokens=16,
                                tools=[{"type": "function", "name": "get_weather",
                                        "parameters": WEATHER}])
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


# -- tool_choice forcing a call with no tools ----------------------------------------------


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "f"}}])
def test_openai_chat_forced_tool_choice_without_tools_is_a_400(server, choice):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="tiny", max_tokens=2, tool_choice=choice,
                                       messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["param"] == "tool_choice"


def test_anthropic_tool_choice_any_without_tools_is_a_400(server):
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="tool_choice"):
        client.messages.create(model="tiny", max_tokens=2, tool_choice={"type": "any"},
                               messages=[{"role": "user", "content": "hi"}])


def test_auto_tool_choice_without_tools_still_answers(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="tiny", max_tokens=1, tool_choice="auto",
                                       messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].finish_reason in ("length", "stop")


# -- a per-model base URL for harnesses whose tokenizer requests name no model ------------


def test_tokenizer_info_without_model_with_two_models_stored_is_a_400(fim_server):
    r = httpx.get(fim_server + "/tokenizer_info", timeout=60)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("name", ["tiny", "fim", "fim%3Alatest"])
def test_model_base_url_names_the_tokenizer(fim_server, name):
    info = httpx.get(f"{fim_server}/model/{name}/tokenizer_info", timeout=60)
    assert info.status_code == 200, info.text
    assert info.json()["model"].startswith(name.replace("%3A", ":").split(":")[0])
    tokens = httpx.post(f"{fim_server}/model/{name}/tokenize", json={"prompt": "hello"},
                        timeout=60)
    assert tokens.status_code == 200, tokens.text
    text = httpx.post(f"{fim_server}/model/{name}/detokenize",
                      json={"tokens": tokens.json()["tokens"]}, timeout=60)
    assert text.json()["prompt"].endswith("hello")


def test_model_base_url_body_model_wins_and_unknown_is_a_404(fim_server):
    r = httpx.post(f"{fim_server}/model/fim/v1/completions",
                   json={"model": "tiny", "prompt": "hi", "max_tokens": 1}, timeout=60)
    assert r.status_code == 200 and r.json()["model"] == "tiny", r.text
    missing = httpx.get(f"{fim_server}/model/nosuch/tokenizer_info", timeout=60)
    assert missing.status_code == 404, missing.text
    empty = httpx.get(f"{fim_server}/model//tokenizer_info", timeout=60)
    assert empty.status_code == 404
