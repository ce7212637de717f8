"""Jobs for the scheduler tests (test_scheduler, test_prefix_share, test_speculative,
the padding tests): a bounded request, one that never ends by itself, its text, a
polling wait, and a record of the slots padded."""

from __future__ import annotations

import time

import pytest

from locallama.engine import scheduler as scheduler_module
from locallama.engine.job import Job
from locallama.engine.model import LoadedModel
from locallama.engine.padding import remove_padding
from locallama.options import resolve_options


def job(model: LoadedModel, text: str, **options) -> Job:
    """A request for ``text`` with 16 tokens to generate unless ``options`` say otherwise."""
    return Job(model.tokenize(text), resolve_options({"num_predict": 16, **options}))


def endless(model: LoadedModel, text: str) -> Job:
    """A request that never ends by itself: its grammar has no end, so no EOS either."""
    return Job(model.tokenize(text), resolve_options({"num_predict": 100_000}),
               grammar="root ::= [a-z ] root")


def text_of(model: LoadedModel, one: Job) -> str:
    """The whole answer of ``one`` through the model's scheduler."""
    return "".join(piece.text for piece in model.scheduler.submit(one))


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def counting_padding(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The id of every slot padded (engine/padding.py) from now on, as the scheduler
    removes the padding rows."""
    padded: list[int] = []

    def counted(memory, slots):
        padded.extend(slot.id for slot in slots)
        return remove_padding(memory, slots)

    monkeypatch.setattr(scheduler_module, "remove_padding", counted)
    return padded
