"""The in-process Runtime on a tiny random-weight model: the plumbing users rely on."""

import math
from pathlib import Path

import pytest

from locallama.errors import (
    BadModelFile,
    InvalidModelFile,
    InvalidRequest,
    ModelNotFound,
    TemplateError,
)
from locallama.runtime.types import ChatRequest, GenerateRequest, Message
from runtimes import add_model, create
from tinymodel import write_tiny_gguf


def complete(runtime, prompt="The cat sat on the", **options):
    options = {"num_predict": 24, "temperature": 0, **options}
    chunks = list(runtime.generate(GenerateRequest("tiny", prompt, options=options)))
    assert chunks[-1].done and all(not c.done for c in chunks[:-1])
    return "".join(c.text for c in chunks), chunks[-1]


def test_greedy_output_is_deterministic(runtime):
    assert complete(runtime)[0] == complete(runtime)[0]
    assert complete(runtime)[0]


def test_same_seed_same_output_other_seed_other_output(runtime):
    a = complete(runtime, temperature=1.5, top_k=0, top_p=1.0, seed=7)[0]
    b = complete(runtime, temperature=1.5, top_k=0, top_p=1.0, seed=7)[0]
    c = complete(runtime, temperature=1.5, top_k=0, top_p=1.0, seed=8)[0]
    assert a == b
    assert a != c


def test_num_predict_limits_tokens(runtime):
    _, final = complete(runtime, num_predict=5)
    assert final.eval_count == 5
    assert final.done_reason == "length"


def test_stop_sequence_ends_the_answer_and_is_not_shown(runtime):
    text, _ = complete(runtime, num_predict=40)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), text
    cut, final = complete(runtime, num_predict=40, stop=[stop])
    assert cut == text[: text.index(stop)]
    assert final.done_reason == "stop"


def test_counts_and_timings(runtime):
    _, final = complete(runtime, num_predict=8)
    assert final.prompt_eval_count > 0 and final.eval_count == 8
    assert final.eval_duration > 0 and final.prompt_eval_duration > 0
    assert final.total_duration >= final.eval_duration
    assert final.context and len(final.context) == final.prompt_eval_count + 8


def test_second_chat_turn_evaluates_only_the_new_tokens(runtime):
    first = [Message("user", "Hello there, how are you today?")]
    chunks = list(runtime.chat(ChatRequest("tiny", first, {"num_predict": 6, "temperature": 0})))
    answer = "".join(c.text for c in chunks)
    turn_one = chunks[-1]
    second = first + [Message("assistant", answer),
                      Message("user", "Tell me more.")]
    turn_two = list(runtime.chat(ChatRequest("tiny", second, {"num_predict": 6,
                                                              "temperature": 0})))[-1]
    whole_prompt = len(turn_two.context) - turn_two.eval_count
    assert turn_two.prompt_eval_count < whole_prompt
    assert turn_two.prompt_eval_count < turn_one.prompt_eval_count + 12


def test_chat_renders_the_gguf_template_with_system(runtime, tiny_gguf):
    add_model(runtime, "sys", tiny_gguf, "SYSTEM Be terse.\n")
    final = list(runtime.chat(ChatRequest("sys", [Message("user", "Hi")],
                                          {"num_predict": 1})))[-1]
    expected = ("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\n")
    prompt = runtime.tokenize("sys", expected)
    assert final.context[: len(prompt)] == prompt


def test_modelfile_parameters_apply_and_requests_override(runtime, tiny_gguf):
    add_model(runtime, "short", tiny_gguf, "PARAMETER num_predict 3\n")
    req = GenerateRequest("short", "Once upon")
    assert list(runtime.generate(req))[-1].eval_count == 3
    req.options = {"num_predict": 5}
    assert list(runtime.generate(req))[-1].eval_count == 5


def test_create_from_an_existing_model_inherits_and_overrides(runtime, tmp_path):
    create(runtime, "child", "FROM tiny\nPARAMETER temperature 0.1\nSYSTEM hi\n", tmp_path)
    details = runtime.show("child")
    assert details.parameters == {"temperature": 0.1}
    assert details.system == "hi"
    assert runtime.show("tiny").digest != details.digest


def test_context_continues_a_previous_generate(runtime):
    _, first = complete(runtime, "One two", num_predict=4)
    req = GenerateRequest("tiny", " three", context=first.context,
                          options={"num_predict": 2, "temperature": 0})
    final = list(runtime.generate(req))[-1]
    assert final.context[: len(first.context)] == first.context


def test_prompt_longer_than_the_context_is_truncated_not_fatal(runtime):
    text, final = complete(runtime, "word " * 600, num_ctx=256, num_predict=4)
    assert final.eval_count == 4
    assert len(final.context) <= 256


def test_show_reports_the_model(runtime):
    d = runtime.show("tiny")
    assert d.architecture == "llama"
    assert d.quantization == "F32"
    assert d.context_length == 2048
    assert d.template and "im_start" in d.template
    assert d.modelfile.splitlines()[1].startswith("FROM ")


def test_embeddings_are_normalised_vectors(runtime):
    result = runtime.embed("tiny", ["hello world", "the cat"])
    assert len(result.embeddings) == 2
    for vector in result.embeddings:
        assert len(vector) == 64
        assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-4)
    assert result.embeddings[0] != result.embeddings[1]
    assert result.prompt_eval_count > 0


def test_unknown_model_is_model_not_found(runtime):
    with pytest.raises(ModelNotFound, match="nope:latest"):
        list(runtime.generate(GenerateRequest("nope", "hi")))


def test_bad_options_are_invalid_requests(runtime):
    with pytest.raises(InvalidRequest, match="num_predict"):
        list(runtime.generate(GenerateRequest("tiny", "hi", options={"num_predict": -7})))
    with pytest.raises(InvalidRequest, match="role"):
        list(runtime.chat(ChatRequest("tiny", [Message("wizard", "x")])))


def test_refusals_come_in_a_fixed_order_when_the_request_is_made(runtime):
    """Unknown model, then options, then the prompt's own checks; all raised by the call
    itself (before any chunk is asked for), so a server can answer with an HTTP error."""
    bad = {"num_predict": -7}
    with pytest.raises(ModelNotFound):
        runtime.generate(GenerateRequest("nope", "x", images=["aGk="], options=bad))
    with pytest.raises(InvalidRequest, match="num_predict"):
        runtime.generate(GenerateRequest("tiny", "x", images=["aGk="], options=bad))
    with pytest.raises(InvalidRequest, match="images"):
        runtime.generate(GenerateRequest("tiny", "x", images=["aGk="], format="xml"))
    with pytest.raises(ModelNotFound):
        runtime.chat(ChatRequest("nope", [Message("wizard", "x")], bad))
    with pytest.raises(InvalidRequest, match="num_predict"):
        runtime.chat(ChatRequest("tiny", [Message("wizard", "x")], bad))
    with pytest.raises(InvalidRequest, match="role"):
        runtime.chat(ChatRequest("tiny", [Message("wizard", "x")], keep_alive="soon"))
    assert runtime.ps() == []


@pytest.mark.parametrize(
    ("modelfile", "error", "match"),
    [
        ("FROM ./missing.gguf\n", InvalidRequest, "no such file"),
        ("FROM nosuchmodel\n", ModelNotFound, "nosuchmodel"),
        ("FROM tiny\nPARAMETER warp 9\n", InvalidRequest, "warp"),
        ("FROM tiny\nPARAMETER temperature hot\n", InvalidRequest, "temperature"),
        ("FROM tiny\nTEMPLATE {% for %}\n", TemplateError, "compile"),
        ("FROM tiny\nADAPTER ./lora.gguf\n", Exception, "not supported"),
    ],
)
def test_create_errors_leave_the_store_as_it_was(runtime, tmp_path, modelfile, error, match):
    before = sorted(p.name for p in (tmp_path / "models" / "blobs").iterdir())
    with pytest.raises(error, match=match):
        create(runtime, "broken", modelfile, tmp_path)
    assert not runtime.store.exists("broken")
    assert sorted(p.name for p in (tmp_path / "models" / "blobs").iterdir()) == before


def test_create_from_a_malformed_gguf_is_refused(runtime, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(BadModelFile) as caught:
        add_model(runtime, "bad", bad)
    assert isinstance(caught.value, InvalidModelFile)  # the caller's file: its mistake
    assert not runtime.store.exists("bad")


def test_create_from_a_stored_model_gone_bad_is_the_stores_fault(runtime, tmp_path):
    add_model(runtime, "other", write_tiny_gguf(tmp_path / "other.gguf", seed=5))
    runtime.store.get("other").model_path.write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(BadModelFile) as caught:
        create(runtime, "again", "FROM other\n", tmp_path)
    assert not isinstance(caught.value, InvalidModelFile)  # the server's state
    assert not runtime.store.exists("again")


def test_text_that_is_not_unicode_is_an_invalid_request(runtime, tmp_path):
    """For in-process callers (the faces refuse it where they read a body): once a
    UnicodeEncodeError from deep in the engine."""
    with pytest.raises(InvalidRequest, match="lone surrogate U\\+D800 at character 1"):
        runtime.tokenize("tiny", "a\ud800")
    with pytest.raises(InvalidRequest, match=r"input\[1\] is not valid Unicode") as caught:
        runtime.embed("tiny", ["ok", "\ud800"])
    assert caught.value.param == "input"
    with pytest.raises(InvalidRequest, match="lone surrogate U\\+DC00"):
        list(runtime.generate(GenerateRequest("tiny", "\udc00", raw=True,
                                              options={"num_predict": 1})))
    add_model(runtime, "plain", write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None))
    with pytest.raises(InvalidRequest, match="lone surrogate"):  # the fallback template
        list(runtime.chat(ChatRequest("plain", [Message("user", "\ud800")],
                                      options={"num_predict": 1})))
    assert complete(runtime, num_predict=1)[1].done  # and the model still answers


def test_delete_unloads_and_removes(runtime, tmp_path: Path):
    complete(runtime, num_predict=1)
    runtime.copy("tiny", "twin")
    runtime.delete("tiny")
    assert runtime.loader.loaded() == []
    assert [e.name.display for e in runtime.list()] == ["twin:latest"]
    assert complete_name(runtime, "twin")


def complete_name(runtime, name):
    return list(runtime.generate(GenerateRequest(name, "a", options={"num_predict": 2})))


def test_create_from_a_stored_blob_does_not_copy_it_again(runtime, monkeypatch):
    blob = runtime.store.get("tiny").model_path
    copies = []
    monkeypatch.setattr(runtime.store.blobs, "add_file", lambda p: copies.append(p))
    add_model(runtime, "again", blob)
    assert copies == []
    assert runtime.store.get("again").model_path == blob


def test_create_refuses_a_model_file_whose_own_chat_template_does_not_compile(
        runtime, tmp_path):
    """Every chat would fail with it, so create refuses it, naming the template, and
    stores nothing; with a Modelfile TEMPLATE instead, the file's template is unused
    and the model is made."""

    broken = write_tiny_gguf(tmp_path / "broken.gguf", chat_template="{% for %}{{ ]]] }}")
    blobs = sorted((tmp_path / "models" / "blobs").iterdir())
    with pytest.raises(InvalidModelFile) as caught:
        add_model(runtime, "broken", broken)
    assert "tokenizer.chat_template" in str(caught.value)
    assert "does not compile" in str(caught.value) and "\n" not in str(caught.value)
    assert sorted((tmp_path / "models" / "blobs").iterdir()) == blobs
    assert [e.name.display for e in runtime.list()] == ["tiny:latest"]
    add_model(runtime, "fixed", broken, "TEMPLATE {{ .Prompt }}")
    assert list(runtime.generate(GenerateRequest("fixed", "hi", options={"num_predict": 2})))
