"""Fill-in-the-middle on every face a live server offers: Ollama's /api/generate
``suffix`` (the ``ollama`` client), OpenAI's /v1/completions ``suffix`` (the ``openai``
client), and llama-server's /infill, streamed and not; plus the tokenizer routes
(vLLM's and llama-server's shapes) over the same model."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest
from openai import OpenAI

from liveserver import free_port, serve
from runtimes import local_runtime
from tinymodel import BOS_ID, fim_ids, write_fim_gguf, write_tiny_gguf

IDS = fim_ids()
PRE, SUF, MID = IDS["<|fim_prefix|>"], IDS["<|fim_suffix|>"], IDS["<|fim_middle|>"]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("fimserver")
    runtime = local_runtime(home, ("fim", write_fim_gguf(home / "fim.gguf")),
                            ("plain", write_tiny_gguf(home / "plain.gguf")),
                            host="127.0.0.1", port=free_port())
    with serve(runtime, runtime.settings) as base:
        yield base
    runtime.close()


def words(url: str, text: str) -> list[int]:
    answer = httpx.post(url + "/tokenize", json={"model": "fim", "prompt": text,
                                                 "add_special_tokens": False})
    return answer.json()["tokens"]


def expected(url: str, prefix: str, suffix: str) -> list[int]:
    return [BOS_ID, PRE, *words(url, prefix), SUF, *words(url, suffix), MID]


def test_ollama_generate_suffix(url):
    client = ollama.Client(host=url)
    answer = client.generate(model="fim", prompt="def add(a, b):", suffix="\n    return c",
                             options={"num_predict": 4})
    layout = expected(url, "def add(a, b):", "\n    return c")
    assert answer.context[:len(layout)] == layout and answer.prompt_eval_count == len(layout)
    streamed = list(client.generate(model="fim", prompt="x", suffix="y", stream=True,
                                    options={"num_predict": 2}))
    layout = expected(url, "x", "y")
    assert streamed[-1].done and streamed[-1].context[:len(layout)] == layout


def test_ollama_generate_suffix_on_a_model_without_fim_tokens_is_a_400(url):
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=url).generate(model="plain", prompt="a", suffix="b")
    assert info.value.status_code == 400 and "'plain:latest' does not support insert" in str(
        info.value)


def test_openai_completions_suffix(url):
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    answer = client.completions.create(model="fim", prompt="def add(a, b):",
                                       suffix="\n    return c", max_tokens=3)
    assert answer.usage.prompt_tokens == len(expected(url, "def add(a, b):", "\n    return c"))
    assert answer.choices[0].finish_reason in ("stop", "length")
    events = list(client.completions.create(model="fim", prompt="a", suffix="b", max_tokens=2,
                                            stream=True))
    assert events[-1].choices[0].finish_reason in ("stop", "length")


def test_infill_whole_answer_has_llama_servers_completion_fields(url):
    answer = httpx.post(url + "/infill", json={
        "input_prefix": "def add(a, b):\n", "input_suffix": "\n", "prompt": "    return",
        "input_extra": [{"filename": "util.py", "text": "def sub(a, b): return a - b"}],
        "n_predict": 3, "temperature": 0, "cache_prompt": True, "samplers": ["top_k"],
        "model": "fim"}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body["content"], str) and body["stop"] is True
    assert body["tokens_predicted"] <= 3 and body["stop_type"] in ("eos", "limit")
    prefix, snippet = words(url, "def add(a, b):\n"), words(url, "\n\n--- snippet ---\n\n")
    layout = [*snippet, *words(url, "def sub(a, b): return a - b"), BOS_ID, PRE, *prefix,
              *words(url, "    return"), SUF, *words(url, "\n"), MID]
    assert body["tokens_evaluated"] == len(layout)
    assert set(body["timings"]) >= {"cache_n", "prompt_n", "predicted_n",
                                    "predicted_per_second"}
    assert body["timings"]["cache_n"] == body["tokens_cached"]


def test_infill_streams_events_then_a_last_one_with_stop(url):
    with httpx.stream("POST", url + "/infill", json={
            "model": "fim", "input_prefix": "x = ", "n_predict": 4, "stream": True},
            timeout=60) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ")]
    assert events[-1]["stop"] is True and "tokens_predicted" in events[-1]
    assert all(e["stop"] is False for e in events[:-1])
    whole = httpx.post(url + "/infill", json={"model": "fim", "input_prefix": "x = ",
                                              "n_predict": 4}, timeout=60).json()
    assert whole["tokens_evaluated"] == events[-1]["tokens_evaluated"]


def test_infill_refuses_a_model_without_fim_tokens(url):
    answer = httpx.post(url + "/infill", json={"model": "plain", "input_prefix": "a"})
    assert answer.status_code == 400 and "does not support insert" in answer.json()["error"]


def test_infill_without_a_model_needs_one_when_several_are_stored(url):
    answer = httpx.post(url + "/infill", json={"input_prefix": "a"})
    assert answer.status_code == 400 and "model is required" in answer.json()["error"]


# -- the tokenizer routes ------------------------------------------------------------


def test_vllm_tokenize_and_detokenize(url):
    with_bos = httpx.post(url + "/tokenize", json={"model": "fim", "prompt": "hello world",
                                                   "return_token_strs": True}).json()
    assert with_bos["tokens"][0] == BOS_ID and with_bos["count"] == len(with_bos["tokens"])
    assert with_bos["max_model_len"] == 2048
    assert with_bos["token_strs"][0] == "<s>" and "".join(with_bos["token_strs"][1:]).strip() \
        == "hello world"
    plain = httpx.post(url + "/tokenize", json={"model": "fim", "prompt": "hello world",
                                                "add_special_tokens": False}).json()
    assert plain["tokens"] == with_bos["tokens"][1:]
    back = httpx.post(url + "/detokenize", json={"model": "fim", "tokens": plain["tokens"]})
    assert back.json()["prompt"].strip() == "hello world" == back.json()["content"].strip()


def test_vllm_tokenize_of_messages_is_the_chat_prompt(url):
    answer = httpx.post(url + "/tokenize", json={
        "model": "fim", "messages": [{"role": "user", "content": "Hi"}]}, timeout=60).json()
    text = httpx.post(url + "/detokenize", json={"model": "fim",
                                                 "tokens": answer["tokens"]}).json()["prompt"]
    assert "user\nHi" in text and text.endswith("assistant\n")


def test_llama_server_tokenize_with_pieces(url):
    answer = httpx.post(url + "/tokenize", json={"model": "fim", "content": "<s>the cat",
                                                 "with_pieces": True}).json()
    assert answer["tokens"][0] == {"id": BOS_ID, "piece": "<s>"}  # special text parsed
    assert "".join(t["piece"] for t in answer["tokens"][1:]).strip() == "the cat"
    bare = httpx.post(url + "/tokenize", json={"model": "fim", "content": "the cat"}).json()
    assert bare == {"tokens": [t["id"] for t in answer["tokens"][1:]]}  # no BOS by default


def test_tokenizer_info(url):
    info = httpx.get(url + "/tokenizer_info", params={"model": "fim"}).json()
    assert info["tokenizer_class"] and info["tokenizer_model"] == "llama"
    assert (info["bos_token"], info["eos_token"], info["unk_token"]) == ("<s>", "</s>", "<unk>")
    assert info["add_bos_token"] is True and info["model_max_length"] == 2048
    assert "im_start" in info["chat_template"]


def test_tokenizer_routes_refuse_unknown_models_and_bad_ids(url):
    assert httpx.post(url + "/tokenize", json={"model": "nope", "prompt": "a"}).status_code == 404
    bad = httpx.post(url + "/detokenize", json={"model": "fim", "tokens": [10 ** 6]})
    assert bad.status_code == 400 and "outside the vocabulary" in bad.json()["error"]


def test_show_lists_insert_for_a_model_with_fim_tokens_only(url):
    """Ollama's capability "insert" (suffix works) for a model whose vocabulary declares
    FIM tokens; an editor plugin checks it before offering completions."""
    client = ollama.Client(host=url)
    assert "insert" in client.show("fim").capabilities
    assert "insert" not in client.show("plain").capabilities
