"""``locallama run MODEL [PROMPT]``: answer once, or open the chat REPL."""

from __future__ import annotations

import sys

import typer

from locallama.cli.answer import answer_once, ensure_model
from locallama.cli.app import app
from locallama.cli.common import get_runtime


@app.command()
def run(
    model: str = typer.Argument(..., help="Model name, e.g. gemma3:270m"),
    prompt: list[str] = typer.Argument(None, help="Answer this prompt once and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Print timings after each answer."),
    think: bool | None = typer.Option(
        None, "--think/--nothink",
        help="Let a thinking model think (or not); unset: the model's default."),
    think_level: str | None = typer.Option(
        None, "--think-level", help="How hard a thinking model thinks: low, medium, high."),
    hide_thinking: bool = typer.Option(
        False, "--hidethinking", help="Do not show what a thinking model thinks."),
) -> None:
    """Run a model: a chat REPL on a terminal, one answer for a prompt or piped input."""
    wanted = think_level if think_level and think is not False else think
    runtime = get_runtime()
    ensure_model(runtime, model)
    text = " ".join(prompt or [])
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        text = f"{piped.rstrip()}\n\n{text}" if text and piped.strip() else (piped or text)
    if text or not sys.stdin.isatty():
        answer_once(runtime, model, text, verbose, wanted, hide_thinking)
        return
    from locallama.cli.repl import Repl

    Repl(runtime, model, verbose=verbose, think=wanted, hide_thinking=hide_thinking).loop()
