"""What a request wants of its stream, and the model's output split into Chunks.

``LocalRuntime._run`` (the one streaming path under generate and chat) builds a
:class:`StreamShape` per request and feeds every piece the scheduler releases
through an :class:`OutputSplit`: thinking apart from text (``engine/reasoning.py``),
tool calls as deltas while they form (``engine/tool_stream.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from locallama.engine.reasoning import ReasoningSplitter
from locallama.engine.tool_stream import ToolCallStream
from locallama.runtime.prompt import Prompt
from locallama.runtime.types import Chunk


@dataclass(frozen=True)
class StreamShape:
    """How a request wants its stream: everything beyond prompt and options."""

    keep_alive: float | None
    grammar: str | None = None
    top_logprobs: int | None = None  # None: no logprobs
    echo: bool = False
    tool_names: set[str] | None = None  # None: no tools
    hide_thinking: bool = False  # think False: what a model thinks anyway is not sent
    truncate: bool = True
    shift: bool = True


class OutputSplit:
    """A stream's output pieces into Chunks: thinking apart from text (the prompt's
    reasoning format), tool calls as deltas (when tools were offered)."""

    def __init__(self, prompt: Prompt, shape: StreamShape) -> None:
        self.reasoning = (ReasoningSplitter(prompt.reasoning, prompt.inside)
                          if prompt.reasoning else None)
        self.calls = ToolCallStream(shape.tool_names) if shape.tool_names is not None else None
        self.hide_thinking = shape.hide_thinking

    def chunk(self, piece: str | None) -> Chunk:
        """The chunk for ``piece``; None: the stream's end (what was held back)."""
        end = piece is None
        if self.reasoning is None:
            thinking, text = "", piece or ""
        else:
            thinking, text = self.reasoning.flush() if end else self.reasoning.feed(piece)
        deltas = None
        if self.calls is not None:
            step = self.calls.feed(text)
            if end:
                rest = self.calls.flush()
                step.text += rest.text
                step.deltas += rest.deltas
            text, deltas = step.text, step.deltas or None
        return Chunk(text=text, thinking="" if self.hide_thinking else thinking,
                     tool_call_deltas=deltas)
