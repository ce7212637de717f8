"""The reasoning split: every way a model's markers can fall across pieces."""

from __future__ import annotations

import pytest

from locallama.engine.markers import MarkerScanner
from locallama.engine.reasoning import (
    ReasoningFormat,
    ReasoningSplitter,
    reasoning_format,
    starts_inside,
    template_switches,
)

QWEN3 = ("{%- if enable_thinking is defined and enable_thinking is false %}"
         "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}")
GPT_OSS = "<|start|>assistant<|channel|>analysis<|message|>{{ m.thinking }}<|end|>"
TAGS = ReasoningFormat("tags", "<think>", "</think>")


def split_every_way(fmt: ReasoningFormat, text: str, inside: bool = False):
    """(thinking, answer) for ``text`` cut at every pair of positions."""
    results = set()
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            splitter = ReasoningSplitter(fmt, inside)
            thinking, answer = "", ""
            for piece in (text[:i], text[i:j], text[j:]):
                t, a = splitter.feed(piece)
                thinking, answer = thinking + t, answer + a
            t, a = splitter.flush()
            results.add((thinking + t, answer + a))
    return results


def test_think_tags_split_at_every_position():
    assert split_every_way(TAGS, "<think>\nLet me see.\n</think>\n\nIt is 4.") == {
        ("Let me see.\n", "It is 4.")}


def test_output_that_starts_inside_the_thinking():
    """DeepSeek-R1's prompt ends in <think>: the output is thinking up to </think>."""
    assert split_every_way(TAGS, "hmm </think>4", inside=True) == {("hmm ", "4")}


def test_a_lookalike_of_a_marker_is_text():
    assert split_every_way(TAGS, "a <thin b </thinx c") == {("", "a <thin b </thinx c")}


def test_harmony_channels():
    fmt = ReasoningFormat("harmony")
    text = ("<|channel|>analysis<|message|>User asks 2+2.<|end|>"
            "<|start|>assistant<|channel|>final<|message|>4")
    assert split_every_way(fmt, text) == {("User asks 2+2.", "4")}


def test_a_harmony_call_becomes_a_tagged_tool_call():
    fmt = ReasoningFormat("harmony")
    text = ("<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant"
            "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
            '{"city":"Paris"}<|call|>')
    assert split_every_way(fmt, text) == {(
        "Need weather.",
        '<tool_call>{"name": "get_weather", "arguments": {"city":"Paris"}}</tool_call>')}
    text = "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{}"
    assert split_every_way(fmt, text) == {
        ("", '<tool_call>{"name": "f", "arguments": {}}</tool_call>')}


def test_detection_from_the_template():
    assert reasoning_format(QWEN3) == TAGS
    assert reasoning_format(GPT_OSS) == ReasoningFormat("harmony")
    assert reasoning_format("{{ '[THINK]' }}x{{ '[/THINK]' }}").open == "[THINK]"
    assert reasoning_format("<|im_start|>{{ messages }}") is None
    assert reasoning_format(None) is None


def test_the_prompt_tells_whether_the_output_starts_inside():
    assert starts_inside(TAGS, "<|im_start|>assistant\n<think>\n")
    assert not starts_inside(TAGS, "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not starts_inside(TAGS, "<|im_start|>assistant\n")


@pytest.mark.parametrize(("think", "switches"), [
    (None, {}), (True, {"enable_thinking": True}), (False, {"enable_thinking": False}),
    ("high", {"enable_thinking": True, "reasoning_effort": "high"}),
])
def test_template_switches(think, switches):
    assert template_switches(think) == switches


def test_marker_scanner_loses_nothing():
    text = "x<a>y<ab>z<a"
    for i in range(len(text) + 1):
        scanner = MarkerScanner(["<a>", "<ab>"])
        events = scanner.feed(text[:i]) + scanner.feed(text[i:]) + scanner.flush()
        assert "".join(v for _, v in events) == text
        assert [v for k, v in events if k == "marker"] == ["<a>", "<ab>"]
