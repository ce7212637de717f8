"""Running a recipe against a model: chat for instruction models, raw completion for base ones."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import Any

from locallama.everyday.recipes import Recipe
from locallama.runtime.base import Runtime
from locallama.runtime.types import ChatRequest, GenerateRequest, Message
from locallama.settings import Settings


def task_model(settings: Settings, override: str | None) -> str:
    """The model a task uses: ``--model`` when given, else LOCALLAMA_TASK_MODEL's."""
    return override or settings.task_model


def is_chat_model(runtime: Runtime, model: str) -> bool:
    """A model with a chat template follows instructions; one without completes text."""
    return runtime.show(model).template is not None


def base_model_note(runtime: Runtime, model: str) -> str | None:
    """The one line to print on stderr when ``model`` is a base model, else None."""
    if is_chat_model(runtime, model):
        return None
    return (f"{model} is a base model: it completes text rather than following "
            "instructions; use --model with an instruction-tuned model")


def answer(runtime: Runtime, model: str, recipe: Recipe, variables: dict[str, Any], *,
           on_text: Callable[[str], None] | None = None,
           options: dict[str, Any] | None = None) -> str:
    """Run ``recipe`` with ``variables`` on ``model`` and return the whole answer.

    ``on_text`` gets each piece as it streams (to print it).  Options: the
    recipe's, then the call's; ``num_predict`` is the recipe's ``answer_tokens``
    unless the call sets it.  A chat model gets the system message and the prompt
    as two messages; a base model gets the prompt alone as raw text, because the
    prompts are written to read as the start of a document a model would continue.
    """
    merged: dict[str, Any] = {"num_predict": recipe.answer_tokens, **recipe.options,
                              **(options or {})}
    if "stop" in merged:
        merged["stop"] = list(merged["stop"])
    prompt = recipe.render(**variables)
    if is_chat_model(runtime, model):
        system = recipe.render_system(**variables).strip()
        messages = [Message("system", system)] if system else []
        messages.append(Message("user", prompt))
        chunks = runtime.chat(ChatRequest(model=model, messages=messages, options=merged))
    else:
        chunks = runtime.generate(GenerateRequest(model=model, prompt=prompt, raw=True,
                                                  options=merged))
    pieces: list[str] = []
    with closing(chunks):
        for chunk in chunks:
            if chunk.text:
                pieces.append(chunk.text)
                if on_text is not None:
                    on_text(chunk.text)
    return "".join(pieces)
