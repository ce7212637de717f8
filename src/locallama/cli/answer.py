"""Answering on the terminal, shared by ``run``, the REPL and the commands that need a
model: make sure the model is there, stream an answer to stdout.

No command registers here, so any CLI module imports it without a cycle.
"""

from __future__ import annotations

import sys
from contextlib import closing

from locallama.cli.output import console, err_console, timing_block
from locallama.errors import ModelNotFound
from locallama.runtime.base import Runtime
from locallama.runtime.types import Chunk, GenerateRequest, Think
from locallama.store.names import parse_name
from locallama.store.sources import bundled_names


def ensure_model(runtime: Runtime, model: str) -> None:
    """Pull a missing model when it can be pulled offline, else fail in one line."""
    name = parse_name(model)
    try:
        runtime.show(model)
        return
    except ModelNotFound:
        pass
    if not any(parse_name(n).key() == name.key() for n in bundled_names()):
        offline = ", ".join(bundled_names()) or "none"
        raise ModelNotFound(name.display, f"models available offline: {offline}")
    with err_console.status(f"pulling {name.display}") as status:
        runtime.pull(model, progress=lambda event: status.update(event.status))


def answer_once(runtime: Runtime, model: str, prompt: str, verbose: bool,
                think: Think = None, hide_thinking: bool = False) -> None:
    """One answer to ``prompt`` on stdout (its thinking as ``stream_to_stdout`` shows
    it), with the timings on stderr when ``verbose``."""
    prompt, images = _attached_images(runtime, model, prompt)
    request = GenerateRequest(model=model, prompt=prompt, think=think, images=images or None)
    final = stream_to_stdout(runtime.generate(request), hide_thinking)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if verbose and final is not None:
        err_console.print(timing_block(final), markup=False)


def _attached_images(runtime: Runtime, model: str, prompt: str) -> tuple[str, list[str]]:
    """Image file paths in a vision model's prompt taken out of it as its images, as
    ``ollama run MODEL "what is in ./cat.png"`` does (and the REPL, repl_images);
    another model's prompt is left as it is."""
    if "/" not in prompt or "vision" not in (runtime.show(model).capabilities or []):
        return prompt, []
    from locallama.cli.repl_images import attach_images

    prompt, images, files = attach_images(prompt, runtime.settings.max_image_bytes)
    for path in files:
        err_console.print(f"Added image '{path}'", markup=False, soft_wrap=True)
    return prompt, images


def stream_to_stdout(chunks, hide_thinking: bool = False) -> Chunk | None:
    """Write text as it arrives; return the final chunk (with the counts). A thinking
    model's reasoning comes first, between "Thinking..." and "...done thinking." as
    Ollama's CLI shows it, dimmed on a terminal; ``hide_thinking`` leaves it out."""
    final = None
    thinking = False
    with closing(chunks):
        for chunk in chunks:
            if chunk.thinking and not hide_thinking:
                if not thinking:
                    _dim("Thinking...\n")
                    thinking = True
                _dim(chunk.thinking)
            if chunk.text:
                if thinking:
                    _dim("\n...done thinking.\n\n")
                    thinking = False
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            if chunk.done:
                final = chunk
    if thinking:
        _dim("\n...done thinking.\n\n")
    return final


def _dim(text: str) -> None:
    """Thinking text: Rich's "dim" style on a terminal, plain text otherwise."""
    sys.stdout.flush()
    console.print(text, style="dim", end="", markup=False, highlight=False,
                  soft_wrap=True)
    console.file.flush()
