"""``locallama run MODEL [PROMPT]``: answer once, or open the chat REPL."""

from __future__ import annotations

import sys
from contextlib import closing

import typer

from locallama.cli import app
from locallama.cli.common import get_runtime
from locallama.cli.output import err_console, timing_block
from locallama.errors import ModelNotFound
from locallama.runtime.base import Runtime
from locallama.runtime.types import Chunk, GenerateRequest
from locallama.store.names import parse_name


@app.command()
def run(
    model: str = typer.Argument(..., help="Model name, e.g. gemma3:270m"),
    prompt: list[str] = typer.Argument(None, help="Answer this prompt once and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Print timings after each answer."),
) -> None:
    """Run a model: a chat REPL on a terminal, one answer for a prompt or piped input."""
    runtime = get_runtime()
    ensure_model(runtime, model)
    text = " ".join(prompt or [])
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        text = f"{piped.rstrip()}\n\n{text}" if text and piped.strip() else (piped or text)
    if text or not sys.stdin.isatty():
        answer_once(runtime, model, text, verbose)
        return
    from locallama.cli.repl import Repl

    Repl(runtime, model, verbose=verbose).loop()


def ensure_model(runtime: Runtime, model: str) -> None:
    """Pull a missing model when it can be pulled offline, else fail in one line."""
    name = parse_name(model)
    try:
        runtime.show(model)
        return
    except ModelNotFound:
        pass
    offline_models = runtime.offline_models()
    if not any(parse_name(n).key() == name.key() for n in offline_models):
        offline = ", ".join(offline_models) or "none"
        raise ModelNotFound(name.display, f"models available offline: {offline}")
    with err_console.status(f"pulling {name.display}") as status:
        runtime.pull(model, progress=lambda event: status.update(event.status))


def answer_once(runtime: Runtime, model: str, prompt: str, verbose: bool) -> None:
    final = stream_to_stdout(runtime.generate(GenerateRequest(model=model, prompt=prompt)))
    sys.stdout.write("\n")
    sys.stdout.flush()
    if verbose and final is not None:
        err_console.print(timing_block(final), markup=False)


def stream_to_stdout(chunks) -> Chunk | None:
    """Write text as it arrives; return the final chunk (with the counts)."""
    final = None
    with closing(chunks):
        for chunk in chunks:
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            if chunk.done:
                final = chunk
    return final
