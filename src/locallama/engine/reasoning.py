"""Reasoning models: which convention a model thinks in, and its output split in two.

A model's chat template declares how it thinks; nothing is guessed from the output:

* tag pairs, the thinking between an opening and a closing marker: ``<think>`` …
  ``</think>`` (Qwen3, DeepSeek-R1, QwQ, Phi-4-reasoning), ``[THINK]`` … ``[/THINK]``
  (Magistral), ``◁think▷`` … ``◁/think▷`` (Kimi), ``<seed:think>`` … ``</seed:think>``
  (Seed-OSS), ``<|channel>thought`` … ``<channel|>`` (Gemma 4). When the rendered
  prompt already opened the pair (DeepSeek-R1's and Qwen3-2507's generation prompts
  end in ``<think>``), the output starts inside the thinking.
* OpenAI's harmony channels (gpt-oss): ``<|channel|>analysis<|message|>`` … ``<|end|>``
  is thinking, ``<|channel|>final<|message|>`` … the answer
  (https://cookbook.openai.com/articles/openai-harmony).

:class:`ReasoningSplitter` takes the output piece by piece and gives back
(thinking, text) pairs, never a piece of a marker (a marker split over tokens is
held back until it is whole or cannot be one).  The switch a template reads is given
by :func:`template_switches`: ``enable_thinking`` (Qwen3 and most others) and
``reasoning_effort`` (gpt-oss), as llama-server passes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from locallama.engine.markers import MarkerScanner

#: (opening, closing) marker pairs, in the order they are looked for in a template
TAG_PAIRS: tuple[tuple[str, str], ...] = (
    ("<seed:think>", "</seed:think>"),
    ("<think>", "</think>"),
    ("[THINK]", "[/THINK]"),
    ("◁think▷", "◁/think▷"),
    ("<|channel>thought", "<channel|>"),
)

#: gpt-oss's harmony markers
HARMONY = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>",
           "<|constrain|>")

LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class ReasoningFormat:
    """How a model's template says it thinks: ``kind`` "tags" (``open`` … ``close``) or
    "harmony" (gpt-oss channels); ``markers`` are the texts that may be special tokens
    the output must spell out for the split to see them."""

    kind: str
    open: str = ""
    close: str = ""

    @property
    def markers(self) -> tuple[str, ...]:
        return HARMONY if self.kind == "harmony" else (self.open, self.close)


def reasoning_format(template_source: str | None) -> ReasoningFormat | None:
    """The convention a chat template declares, or None for a model that does not
    think (no known marker in its template)."""
    if not template_source:
        return None
    if "<|channel|>" in template_source and "analysis" in template_source:
        return ReasoningFormat("harmony")
    for open_, close in TAG_PAIRS:
        if open_ in template_source and close in template_source:
            return ReasoningFormat("tags", open_, close)
    return None


def template_switches(think: bool | str | None) -> dict[str, object]:
    """The variables a chat template reads for ``think`` (Ollama's think, OpenAI's
    reasoning_effort): nothing for None (the template's default); ``enable_thinking``
    True/False; a level also as ``reasoning_effort`` (gpt-oss's template reads it)."""
    if think is None:
        return {}
    if isinstance(think, str):
        return {"enable_thinking": True, "reasoning_effort": think}
    return {"enable_thinking": bool(think)}


def starts_inside(fmt: ReasoningFormat, prompt: str) -> bool:
    """Whether the rendered ``prompt`` left the thinking open, so that the model's first
    words are thinking (a tags format whose last opening marker is not closed)."""
    if fmt.kind != "tags":
        return False
    opened = prompt.rfind(fmt.open)
    return opened >= 0 and prompt.rfind(fmt.close) < opened


class ReasoningSplitter:
    """Output pieces in, ``(thinking, text)`` out, as they can be told apart.

    ``inside``: the output starts inside the thinking (see :func:`starts_inside`).
    Markers are never released; whitespace right after an opening or closing marker
    is dropped (the "\\n\\n" a model writes after ``</think>`` is layout, not answer).
    Harmony: text of the ``analysis`` channel is thinking, of ``final`` (or of no
    channel) the answer, of ``commentary`` the answer too; headers (role, channel
    names, ``to=…``, ``<|constrain|>json``) are dropped, except that a message to
    ``functions.NAME`` is a tool call: its JSON comes out as the text
    ``<tool_call>{"name": NAME, "arguments": JSON}</tool_call>``, which the tool-call
    stream (``tool_stream.py``) reads as it reads Hermes-style calls."""

    def __init__(self, fmt: ReasoningFormat, inside: bool = False) -> None:
        self.fmt = fmt
        self._scanner = MarkerScanner(fmt.markers)
        self._thinking = inside
        self._trim = inside  # drop whitespace until the next visible character
        self._header: str | None = None  # harmony: collecting a header's text
        self._call = False  # harmony: inside a message to functions.NAME
        self.channel = ""

    def feed(self, piece: str) -> tuple[str, str]:
        """(thinking, text) that ``piece`` completes; either may be empty."""
        return self._route(self._scanner.feed(piece))

    def flush(self) -> tuple[str, str]:
        """What was held back, at the stream's end (a harmony call ended by its
        end-of-generation token ``<|call|>``, which the output does not spell, is
        closed here)."""
        thinking, text = self._route(self._scanner.flush())
        if self._call:
            self._call = False
            text += "}</tool_call>"
        return thinking, text

    def _route(self, events: list[tuple[str, str]]) -> tuple[str, str]:
        thinking: list[str] = []
        text: list[str] = []
        for kind, value in events:
            if kind == "marker":
                text.append(self._marker(value))
                continue
            if self._header is not None:
                self._header += value
                continue
            if self._trim:
                value = value.lstrip()
                if not value:
                    continue
                self._trim = False
            (thinking if self._thinking else text).append(value)
        return "".join(thinking), "".join(text)

    def _marker(self, marker: str) -> str:
        """Follow ``marker``; returns text it stands for (a harmony call's wrapping)."""
        if self.fmt.kind == "tags":
            self._thinking = marker == self.fmt.open
            self._trim = True
            return ""
        if marker == "<|start|>":
            self._header = ""
        elif marker in ("<|channel|>", "<|constrain|>"):  # the header goes on (to=…)
            self._header = (self._header or "") + " "
        elif marker == "<|message|>":
            words = (self._header or "").split()
            self.channel = next((w for w in words if w in ("analysis", "commentary",
                                                           "final")), "")
            recipient = next((w[3:] for w in words if w.startswith("to=")), "")
            self._header = None
            self._thinking = self.channel == "analysis"
            self._trim = True
            if recipient.startswith("functions."):
                self._call, self._thinking = True, False
                name = json.dumps(recipient[len("functions."):])
                return f'<tool_call>{{"name": {name}, "arguments": '
        elif marker in ("<|end|>", "<|return|>", "<|call|>"):
            self._header = None
            self._thinking = False
            if self._call:
                self._call = False
                return "}</tool_call>"
        return ""
