"""Tool calls as they form: text, deltas and calls for every split of the output."""

from __future__ import annotations

import json

import pytest

from locallama.engine.tool_stream import ToolCallStream

WEATHER = {"city": "Paris", "days": [1, 2], "note": "a \"quoted\" }{ text"}


def run(pieces, known=None):
    stream = ToolCallStream(known)
    text, deltas, completed = "", [], []
    for piece in [*pieces, None]:
        step = stream.flush() if piece is None else stream.feed(piece)
        text += step.text
        deltas += step.deltas
        completed += step.completed
    return text, deltas, completed


def splits(text):
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1, 3):
            yield [text[:i], text[i:j], text[j:]]


def check_calls(deltas, completed, expected):
    assert [(c.name, c.arguments) for c in completed] == expected
    for index, call in enumerate(completed):
        mine = [d for d in deltas if d.index == index]
        assert (mine[0].id, mine[0].name, mine[0].arguments) == (call.id, call.name, "")
        assert call.id.startswith("call_") and len(call.id) > 10
        assert all(not d.id and not d.name for d in mine[1:])
        assert json.loads("".join(d.arguments for d in mine[1:])) == call.arguments


@pytest.mark.parametrize("text", [
    'Let me look. <tool_call>\n{"name": "weather", "arguments": %s}\n</tool_call>',
    '{"name": "weather", "arguments": %s}',
    '  {"name": "weather", "parameters": %s}',
    '[TOOL_CALLS] [{"name": "weather", "arguments": %s}]',
])
def test_every_split_gives_the_same_call(text):
    text = text % json.dumps(WEATHER)
    prefix = "Let me look. " if text.startswith("Let") else ""
    for pieces in splits(text):
        shown, deltas, completed = run(pieces, {"weather"})
        assert shown == prefix
        check_calls(deltas, completed, [("weather", WEATHER)])


def test_text_streams_before_the_call_and_the_name_comes_before_the_arguments():
    stream = ToolCallStream({"f"})
    assert stream.feed("Sure").text == "Sure"
    assert stream.feed(", <tool").text == ", "
    assert stream.feed('_call>{"name": "').deltas == []
    step = stream.feed('f", ')
    assert (step.text, [(d.index, d.name) for d in step.deltas]) == ("", [(0, "f")])
    step = stream.feed('"arguments": {"x": ')
    assert [(d.name, d.arguments) for d in step.deltas] == [("", '{"x": ')]
    step = stream.feed('1}}</tool_call>')
    assert [d.arguments for d in step.deltas] == ["1}"]
    assert step.completed[0].arguments == {"x": 1}


def test_two_tagged_calls_take_indexes_zero_and_one():
    text = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "b", "arguments": {"y": "z"}}</tool_call>')
    for pieces in splits(text):
        shown, deltas, completed = run(pieces)
        assert shown == ""
        check_calls(deltas, completed, [("a", {}), ("b", {"y": "z"})])


def test_a_list_of_bare_calls():
    text = '[{"name": "a", "arguments": {"n": 1}}, {"name": "b", "arguments": {}}]'
    shown, deltas, completed = run([text[:20], text[20:]])
    check_calls(deltas, completed, [("a", {"n": 1}), ("b", {})])


def test_json_that_is_no_call_is_text():
    for text in ('{"answer": 42}', '[1, 2]', '<tool_call>{"name": "nope"}</tool_call>'):
        for pieces in splits(text):
            shown, deltas, completed = run(pieces, {"weather"})
            assert (shown, deltas, completed) == (text, [], [])


def test_plain_text_passes_through_untouched():
    text = "  Hello, I am {not json} [really] <tool a model.\n"
    for pieces in splits(text):
        assert run(pieces, {"weather"}) == (text, [], [])


def test_an_unfinished_call_at_the_end_is_finished_with_what_was_written():
    shown, deltas, completed = run(['<tool_call>{"name": "f", "arguments": {"a": 1}}'])
    check_calls(deltas, completed, [("f", {"a": 1})])


def test_the_function_wrapper_shape_is_read_whole():
    text = '{"type": "function", "function": {"name": "f", "arguments": {"q": 1}}}'
    shown, deltas, completed = run([text])
    check_calls(deltas, completed, [("f", {"q": 1})])
