"""Everyday work: translate, fix, summarize, commit, code, recipes (and ask, at the end).

The commands are thin: they read input, pick the model, and hand over to
``locallama.everyday``; the answer streams to stdout, notes and progress go to
stderr, so ``locallama fix notes.md > fixed.md`` writes only the text.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from locallama.cli.answer import ensure_model
from locallama.cli.app import app
from locallama.cli.common import get_runtime
from locallama.cli.output import console, err_console, print_json
from locallama.errors import InvalidRequest
from locallama.everyday.budget import context_size
from locallama.everyday.run import base_model_note, task_model
from locallama.runtime.base import Runtime
from locallama.settings import Settings

MODEL_HELP = "Model to use (default: LOCALLAMA_TASK_MODEL, else gemma3:270m)."
MAX_TOKENS_HELP = "Cap the answer (each piece's answer, for long input) at this many tokens."
NUM_CTX_HELP = "Context size in tokens (default: the model's num_ctx)."


@dataclass
class _Task:
    """What every task command needs: settings, a Runtime, the model and its context."""

    settings: Settings
    runtime: Runtime
    model: str
    num_ctx: int
    options: dict[str, Any] = field(default_factory=dict)


def _start(model: str | None, num_ctx: int | None) -> _Task:
    """The Runtime and model (pulling the bundled default if needed), with the base-model note."""
    settings = Settings.from_env()
    runtime = get_runtime()
    name = task_model(settings, model)
    ensure_model(runtime, name)
    note = base_model_note(runtime, name)
    if note:
        sys.stderr.write(f"{note}\n")  # one line, never wrapped
        sys.stderr.flush()
    options = {"num_ctx": num_ctx} if num_ctx else {}
    return _Task(settings, runtime, name, context_size(runtime, name, options), options)


class _Out:
    """Streams text to stdout and ends it with one newline; stops a progress spinner first."""

    def __init__(self, status: Any = None) -> None:
        self.status = status
        self.last = ""

    def __call__(self, text: str) -> None:
        if not text:
            return
        self.stop()
        sys.stdout.write(text)
        sys.stdout.flush()
        self.last = text

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def end(self) -> None:
        self.stop()
        if self.last and not self.last.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()


@app.command()
def translate(
    source: str = typer.Argument(None, metavar="[FILE|-]", help="Text to translate (- : stdin)."),
    to: str = typer.Option("English", "--to", "-t", help="Language to translate into."),
    from_: str = typer.Option("", "--from", "-f", help="Language of the text (default: any)."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help=MAX_TOKENS_HELP),
    num_ctx: int = typer.Option(None, "--num-ctx", min=256, help=NUM_CTX_HELP),
) -> None:
    """Translate a text, keeping its Markdown; code blocks are left as they are."""
    from locallama.everyday.inputs import read_input
    from locallama.everyday.recipes import load_recipe
    from locallama.everyday.rewrite import rewrite

    text, _label = read_input(source, allow_url=False)
    task = _start(model, num_ctx)
    out = _Out()
    rewrite(task.runtime, task.model, load_recipe("translate", task.settings), text,
            {"target_language": to, "source_language": from_}, num_ctx=task.num_ctx,
            max_tokens=max_tokens, on_text=out, options=task.options)
    out.end()


@app.command()
def fix(
    source: str = typer.Argument(None, metavar="[FILE|-]", help="Text to correct (- : stdin)."),
    diff: bool = typer.Option(False, "--diff", "-d", help="Show a word-level diff instead."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help=MAX_TOKENS_HELP),
    num_ctx: int = typer.Option(None, "--num-ctx", min=256, help=NUM_CTX_HELP),
) -> None:
    """Correct grammar and spelling, keeping the meaning; --diff shows what changed."""
    from locallama.everyday.inputs import read_input
    from locallama.everyday.recipes import load_recipe
    from locallama.everyday.rewrite import format_word_diff, rewrite, word_diff

    text, _label = read_input(source, allow_url=False)
    task = _start(model, num_ctx)
    status = err_console.status("correcting") if diff else None
    out = _Out()
    if status is not None:
        status.start()
    try:
        fixed = rewrite(task.runtime, task.model, load_recipe("fix", task.settings), text, {},
                        num_ctx=task.num_ctx, max_tokens=max_tokens,
                        on_text=None if diff else out, options=task.options)
    finally:
        if status is not None:
            status.stop()
    if not diff:
        out.end()
        return
    runs = word_diff(text, fixed)
    if console.is_terminal:
        from rich.text import Text

        styles = {"=": "", "-": "red strike", "+": "green"}
        rendered = Text()
        for kind, piece in runs:
            rendered.append(piece, style=styles[kind])
        console.print(rendered, end="" if fixed.endswith("\n") else "\n", soft_wrap=True)
    else:
        result = format_word_diff(runs)
        sys.stdout.write(result if result.endswith("\n") else result + "\n")


@app.command()
def summarize(
    source: str = typer.Argument(None, metavar="FILE|URL|-", help="What to summarize."),
    length: str = typer.Option("medium", "--length", "-l", help="short, medium or long."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help=MAX_TOKENS_HELP),
    num_ctx: int = typer.Option(None, "--num-ctx", min=256, help=NUM_CTX_HELP),
) -> None:
    """Summarize a file, a web page or stdin; long texts in parts, then combined."""
    from locallama.everyday.inputs import read_input
    from locallama.everyday.summarize import LENGTHS
    from locallama.everyday.summarize import summarize as summarize_text

    if length not in LENGTHS:
        raise InvalidRequest(f"--length must be short, medium or long, not {length!r}")
    text, _label = read_input(source, allow_url=True)
    task = _start(model, num_ctx)
    status = err_console.status("summarizing")
    status.start()
    out = _Out(status)
    try:
        summarize_text(task.runtime, task.model, task.settings, text, length=length,
                       num_ctx=task.num_ctx, max_tokens=max_tokens, on_text=out,
                       on_progress=status.update, options=task.options)
    finally:
        out.end()


@app.command()
def commit(
    hook: bool = typer.Option(False, "--hook", help="Install a prepare-commit-msg hook "
                              "that fills empty commit messages."),
    force: bool = typer.Option(False, "--force", help="With --hook: replace an existing hook."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help=MAX_TOKENS_HELP),
    num_ctx: int = typer.Option(None, "--num-ctx", min=256, help=NUM_CTX_HELP),
) -> None:
    """Write a commit message for the staged changes, in the repository's own style."""
    from locallama.everyday.commit import commit_message, install_hook, read_staged

    if hook:
        path, outcome = install_hook(model=model, force=force)
        verb = {"installed": "installed", "replaced": "replaced",
                "unchanged": "already installed:"}[outcome]
        typer.echo(f"{verb} {path}")
        return
    staged = read_staged()
    task = _start(model, num_ctx)
    stream = sys.stdout.isatty()  # a script or the hook gets the cleaned message only
    status = err_console.status("writing the commit message")
    status.start()
    out = _Out(status)
    try:
        message = commit_message(task.runtime, task.model, task.settings, staged,
                                 num_ctx=task.num_ctx, max_tokens=max_tokens,
                                 on_text=out if stream else None,
                                 on_progress=status.update, options=task.options)
    finally:
        out.stop()
    if stream:
        out.end()
    else:
        sys.stdout.write(message + "\n")


@app.command()
def code(
    question: str = typer.Argument(..., help="The question about the code."),
    paths: list[str] = typer.Argument(None, metavar="[PATH]...",
                                      help="Files, or folders to pick files from (default: .)."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help=MAX_TOKENS_HELP),
    num_ctx: int = typer.Option(None, "--num-ctx", min=256, help=NUM_CTX_HELP),
) -> None:
    """Answer a question about code, with the named files (or a folder's relevant ones)."""
    from locallama.everyday.code import ask_code, gather

    files = gather(paths or ["."], question)
    task = _start(model, num_ctx)

    def shown(chosen: list[Any]) -> None:
        names = ", ".join(f.path + (" (start only)" if f.cut else "") for f in chosen[:8])
        more = f" and {len(chosen) - 8} more" if len(chosen) > 8 else ""
        err_console.print(f"context: {names}{more}", markup=False, style="dim")

    out = _Out()
    ask_code(task.runtime, task.model, task.settings, question, files, num_ctx=task.num_ctx,
             max_tokens=max_tokens, on_text=out, on_files=shown, options=task.options)
    out.end()


@app.command()
def recipes(
    action: str = typer.Argument("list", metavar="[list|show]", help="list, or show NAME."),
    name: str = typer.Argument(None, help="The recipe to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The prompt recipes behind the tasks; put NAME.toml in ~/.locallama/recipes to override."""
    from locallama.everyday.recipes import list_recipes, load_recipe

    settings = Settings.from_env()
    if action == "list" and name is None:
        found = list_recipes(settings)
        if as_json:
            print_json([_recipe_json(r) for r in found])
            return
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("NAME", "DESCRIPTION", "SOURCE"):
            table.add_column(column)
        for recipe in found:
            source = "bundled" if recipe.origin == "bundled" else f"user: {recipe.path}"
            table.add_row(recipe.name, recipe.description, source)
        console.print(table)
        return
    if action == "show" and name:
        recipe = load_recipe(name, settings)
        if as_json:
            print_json(_recipe_json(recipe))
        else:
            sys.stdout.write(recipe.text if recipe.text.endswith("\n") else recipe.text + "\n")
        return
    raise InvalidRequest("usage: locallama recipes [list | show NAME] [--json]")


def _recipe_json(recipe: Any) -> dict[str, Any]:
    return {"name": recipe.name, "description": recipe.description, "origin": recipe.origin,
            "path": str(Path(recipe.path)), "answer_tokens": recipe.answer_tokens,
            "options": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in recipe.options.items()},
            "system": recipe.system, "prompt": recipe.prompt}


# -- ask (documents) --


@app.command()
def ask(
    question: list[str] = typer.Argument(..., help="The question (quotes optional)."),
    docs: Path = typer.Option(..., "--docs", "-d",
                              help="Folder of documents: Markdown, text, PDF and HTML files, "
                                   "searched recursively."),
    k: int = typer.Option(4, "--k", "-k", min=1, help="Passages to retrieve."),
    reindex: bool = typer.Option(False, "--reindex",
                                 help="Rebuild the folder's index from scratch."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    embed_model: str = typer.Option(None, "--embed-model", "-e",
                                    help="Model that embeds documents and question (default: "
                                         "LOCALLAMA_EMBED_MODEL, else all-minilm if "
                                         "installed, else gemma3:270m)."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1,
                                   help="Cap the answer at this many tokens."),
    num_ctx: int = typer.Option(None, "--num-ctx", min=256, help=NUM_CTX_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print {answer, sources} as JSON."),
) -> None:
    """Answer a question from a folder of documents, citing the passages it used.

    The folder's index (in LOCALLAMA_HOME/index) is updated first: only new and
    changed files are embedded, deleted ones dropped."""
    from locallama.everyday.ask import ask_documents, check_folder, unknown_citations

    text = " ".join(question or []).strip()
    if not text:
        raise InvalidRequest('no question: locallama ask --docs DIR "your question"')
    folder = docs.expanduser()
    check_folder(folder)  # a typo fails before any model loads
    task = _start(model, num_ctx)
    embed = embed_model or task.settings.embed_model
    if embed != task.model:
        ensure_model(task.runtime, embed)
    bar = _EmbedBar()
    status = err_console.status("answering")
    out = _Out(status)

    def indexed(report: Any) -> None:
        bar.stop()
        if report.added or report.changed or report.removed:
            err_console.print(
                f"index updated: {len(report.added)} added, {len(report.changed)} changed, "
                f"{len(report.removed)} removed, {len(report.unchanged)} unchanged "
                f"({report.embedded} passage{'' if report.embedded == 1 else 's'} embedded)",
                markup=False, style="dim")
        status.start()

    try:
        result = ask_documents(
            task.runtime, task.settings, folder, text, model=task.model, embed=embed, k=k,
            reindex=reindex, num_ctx=task.num_ctx, max_tokens=max_tokens,
            on_text=None if as_json else out, progress=bar, warn=bar.warn,
            on_indexed=indexed, options=task.options)
    finally:
        bar.stop()
        out.stop()
    if as_json:
        print_json({"answer": result.answer, "sources": [
            {"source": h.source, "index": h.index, "score": round(h.score, 4), "text": h.text,
             "page": h.page, "start": h.start, "end": h.end} for h in result.sources]})
        return
    out.end()
    sys.stdout.write("\nSources:\n")
    for hit in result.sources:
        page = f", page {hit.page}" if hit.page else ""
        sys.stdout.write(f"- {hit.source}#{hit.index}{page} ({hit.score:.2f}): "
                         f"{_excerpt(hit.text)}\n")
    sys.stdout.flush()
    unknown = unknown_citations(result.answer, result.sources)
    if unknown:
        err_console.print(f"note: the answer cites {', '.join(unknown)}, not among the sources "
                          "it was given", markup=False, soft_wrap=True)


class _EmbedBar:
    """A progress bar on stderr while passages are embedded; warnings print above it."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, path: str, done: int, total: int) -> None:
        if not err_console.is_terminal:  # a log gets the summary line only
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[file]}"), console=err_console,
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("embedding", total=total, file=path)
        self.bar.update(self.task, completed=done, file=path)

    def warn(self, message: str) -> None:
        err_console.print(f"warning: {message}", markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _excerpt(text: str, width: int = 90) -> str:
    """A passage on one line, cut at a word near ``width`` characters."""
    line = " ".join(text.split())
    if len(line) <= width:
        return line
    return line[:width].rsplit(" ", 1)[0] + "…"
