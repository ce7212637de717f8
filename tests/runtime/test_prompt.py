"""Prompt assembly (runtime/prompt.py): what a generate or chat request puts in front of
the model, as token ids, on the tiny model's vocabulary and its ChatML template."""

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.errors import InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.runtime.prompt import (
    Prompt,
    chat_messages,
    chat_prompt,
    check_generate,
    generate_prompt,
)
from locallama.runtime.types import GenerateRequest, Message, Tool, ToolCall
from locallama.store import ModelRecord, parse_name
from locallama.store.modelfile import parse_modelfile
from tinymodel import BOS_ID, SPECIAL_TOKENS  # the tiny model adds BOS

IM_START = SPECIAL_TOKENS.index("<|im_start|>")


def chatml(*turns: tuple[str, str]) -> str:
    """What the tiny model's ChatML template renders, with the generation prompt."""
    body = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return body + "<|im_start|>assistant\n"


@pytest.fixture
def opened(runtime) -> Iterator[Callable[[str], tuple[ModelRecord, LoadedModel]]]:
    """``opened(name)``: a stored model's record and its weights + vocabulary (no context:
    assembling a prompt only reads the template and tokenizes)."""
    models: list[LoadedModel] = []

    def open_model(name: str) -> tuple[ModelRecord, LoadedModel]:
        record = runtime.store.get(parse_name(name))
        params = ContextParams(num_ctx=256, num_batch=32, num_gpu=0, use_mmap=True)
        models.append(LoadedModel(record.model_path, read_gguf_info(record.model_path), params))
        return record, models[-1]

    yield open_model
    for model in models:
        model.close()


def create(runtime, tmp_path: Path, name: str, modelfile: str) -> None:
    runtime.create(name, parse_modelfile(modelfile), tmp_path)


# -- generate ------------------------------------------------------------------------


def test_a_base_model_gets_the_prompt_as_written_with_the_system_before_it(
        runtime, opened, tmp_path, make_gguf):
    create(runtime, tmp_path, "base", f"FROM {make_gguf(chat_template=None)}\nSYSTEM Be brief.\n")
    record, model = opened("base")

    def prompt(**fields) -> Prompt:
        return generate_prompt(record, GenerateRequest("base", "Once upon a", **fields), model,
                               runtime.renderer)

    assert prompt() == Prompt(model.tokenize("Be brief.\n\nOnce upon a"), ())
    assert prompt(system="Rhyme.").tokens == model.tokenize("Rhyme.\n\nOnce upon a")
    assert prompt(system="").tokens == model.tokenize("Once upon a")  # "" overrides too


def test_a_chat_template_renders_the_system_and_the_prompt(runtime, opened):
    record, model = opened("tiny")
    request = GenerateRequest("tiny", "Hi", system="Be terse.")
    prompt = generate_prompt(record, request, model, runtime.renderer)
    assert prompt.tokens == model.tokenize(chatml(("system", "Be terse."), ("user", "Hi")))
    assert prompt.tokens[0] == BOS_ID
    plain = generate_prompt(record, GenerateRequest("tiny", "Hi"), model, runtime.renderer)
    assert plain.tokens == model.tokenize(chatml(("user", "Hi")))


def test_a_request_template_replaces_the_models(runtime, opened):
    record, model = opened("tiny")
    request = GenerateRequest("tiny", "Hi", template="[{{ .Prompt }}]")
    assert generate_prompt(record, request, model, runtime.renderer).tokens == \
        model.tokenize("[Hi]")


def test_raw_skips_the_template_and_context_ids_come_first_without_a_second_bos(
        runtime, opened):
    record, model = opened("tiny")
    raw = generate_prompt(record, GenerateRequest("tiny", "<|im_start|>Hi", raw=True), model,
                          runtime.renderer)
    assert raw.tokens == model.tokenize("<|im_start|>Hi")  # special tokens spelled out work
    assert raw.tokens[:2] == [BOS_ID, IM_START]
    earlier = [BOS_ID, 300, 301]
    continued = generate_prompt(record, GenerateRequest("tiny", " three", raw=True,
                                                        context=earlier),
                                model, runtime.renderer)
    assert continued.tokens == earlier + model.tokenize(" three", add_bos=False)
    assert BOS_ID not in continued.tokens[len(earlier):]


def test_images_are_refused_before_any_model_loads(runtime, tmp_path):
    record = runtime.store.get(parse_name("tiny"))
    with pytest.raises(InvalidRequest, match="suffix is not valid Unicode"):
        check_generate(record, GenerateRequest("tiny", "def f(", suffix="\ud800"))
    with pytest.raises(InvalidRequest, match="model 'tiny:latest' does not support images"):
        check_generate(record, GenerateRequest("tiny", "x", images=["aGk="]))
    check_generate(record, GenerateRequest("tiny", "x", images=[]))  # none given: fine


# -- chat ----------------------------------------------------------------------------


def test_a_stored_system_applies_only_when_the_conversation_has_none(runtime, tmp_path,
                                                                      tiny_gguf, opened):
    create(runtime, tmp_path, "sys", f"FROM {tiny_gguf}\nSYSTEM Be terse.\n")
    record, model = opened("sys")
    hi = Message("user", "Hi")
    conversation = chat_messages(record, [hi])
    assert conversation == [Message("system", "Be terse."), hi]
    prompt = chat_prompt(record, conversation, None, model, runtime.renderer)
    assert prompt.tokens == model.tokenize(chatml(("system", "Be terse."), ("user", "Hi")))
    own = Message("system", "Be kind.")
    assert chat_messages(record, [own, hi]) == [own, hi]


def test_stored_messages_come_first_after_the_stored_system(runtime, tmp_path, tiny_gguf):
    create(runtime, tmp_path, "primed", f"FROM {tiny_gguf}\nSYSTEM Be terse.\n"
           "MESSAGE user What is two and two?\nMESSAGE assistant Four.\n")
    record = runtime.store.get(parse_name("primed"))
    hi = Message("user", "Hi")
    stored = [Message("user", "What is two and two?"), Message("assistant", "Four.")]
    assert chat_messages(record, [hi]) == [Message("system", "Be terse."), *stored, hi]
    own = Message("system", "Be kind.")
    assert chat_messages(record, [own, hi]) == [*stored, own, hi]


@pytest.mark.parametrize(("message", "match"), [
    (Message("wizard", "x"), "invalid message role 'wizard': use system, user, assistant "
                             "or tool"),
    (Message("user", 5), "message content must be a string"),  # type: ignore[arg-type]
    ({"role": "user", "content": "x"}, "each message must be a Message"),
    # what the bytes b"\xff" on a command line become: refused before any template runs
    (Message("user", "hi \udcff"), "not valid Unicode .*U\\+DCFF at character 3"),
])
def test_a_malformed_message_is_refused(runtime, message, match):
    record = runtime.store.get(parse_name("tiny"))
    with pytest.raises(InvalidRequest, match=match):
        chat_messages(record, [Message("user", "fine"), message])


def test_every_role_is_checked_before_any_image(runtime):
    record = runtime.store.get(parse_name("tiny"))
    with pytest.raises(InvalidRequest, match="role"):
        chat_messages(record, [Message("user", "x", images=["aGk="]), Message("wizard", "y")])


def test_images_are_refused_for_a_model_without_vision(runtime, tmp_path):
    record = runtime.store.get(parse_name("tiny"))
    picture = [Message("user", "What is this?", images=["aGk="])]
    with pytest.raises(InvalidRequest, match="model 'tiny:latest' does not support images"):
        chat_messages(record, picture)
    with_projector = replace(record, projectors=[tmp_path / "mmproj.gguf"])
    assert chat_messages(with_projector, picture)[-1].images == ["aGk="]  # a vision model's
    not_base64 = [Message("user", "What is this?", images=["not base64!"])]
    with pytest.raises(InvalidRequest, match=r"images\[0\] is not valid base64"):
        chat_messages(with_projector, not_base64)


def test_tools_are_refused_for_a_template_that_does_not_read_them(runtime, opened):
    record, model = opened("tiny")
    conversation = chat_messages(record, [Message("user", "hi")])
    with pytest.raises(InvalidRequest, match="model 'tiny:latest' does not support tools"):
        chat_prompt(record, conversation, [Tool("get_time", parameters={})], model,
                    runtime.renderer)
    assert chat_prompt(record, conversation, [], model, runtime.renderer).tokens == \
        model.tokenize(chatml(("user", "hi")))  # no tools: nothing to refuse


def test_tools_and_tool_turns_reach_a_template_that_reads_them(runtime, opened, tmp_path,
                                                                tiny_gguf):
    template = ("{% for t in tools %}{{ t.function.name }};{% endfor %}"
                "{% for m in messages %}{{ m.role }}:{{ m.content }}"
                "{% for c in m.tool_calls or [] %}({{ c.function.name }}){% endfor %}"
                "{{ m.tool_name or '' }}|{% endfor %}")
    create(runtime, tmp_path, "toolish", f'FROM {tiny_gguf}\nTEMPLATE """{template}"""\n')
    record, model = opened("toolish")
    conversation = chat_messages(record, [
        Message("user", "time?"),
        Message("assistant", "", tool_calls=[ToolCall("get_time", {})]),
        Message("tool", "noon", tool_name="get_time"),
    ])
    prompt = chat_prompt(record, conversation, [Tool("get_time"), Tool("get_date")], model,
                         runtime.renderer)
    assert prompt.tokens == model.tokenize(
        "get_time;get_date;user:time?|assistant:(get_time)|tool:noonget_time|")


@pytest.mark.parametrize("field", ["prompt", "system", "template"])
def test_generate_text_that_is_not_unicode_is_refused_before_loading(runtime, field):
    record = runtime.store.get(parse_name("tiny"))
    request = GenerateRequest("tiny", "hi")
    setattr(request, field, "a \udcff")  # what the bytes b"\xff" on a command line become
    with pytest.raises(InvalidRequest, match=f"{field} is not valid Unicode .*U\\+DCFF"):
        check_generate(record, request)
    assert runtime.ps() == []
