"""``locallama perplexity``, ``bench`` and ``report``: measuring models on this machine.

Perplexity and bench run in this process, never through a server: they measure
the engine here, and a server's other clients would disturb the numbers (and
the Ollama API has no scoring call).  Report only reads result files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from locallama.cli.answer import ensure_model
from locallama.cli.app import app
from locallama.cli.output import columns, err_console, print_json
from locallama.errors import InvalidRequest
from locallama.units import format_bench_parameter_count, format_binary_bytes

_OUTPUT_HELP = "Also write the result as JSON to this file (for locallama report)."


@app.command()
def perplexity(
    model: str = typer.Argument(..., help="The model to measure."),
    file: Path = typer.Argument(..., help="A UTF-8 text file (wiki.test.raw, a book, ...)."),
    ctx: int = typer.Option(512, "--ctx", "-c", help="Tokens per chunk (llama-perplexity's -c)."),
    chunks: int = typer.Option(None, "--chunks", help="Score at most this many chunks."),
    threads: int = typer.Option(0, "--threads", "-t", help="CPU threads (0: physical cores)."),
    output: Path = typer.Option(None, "--output", "-o", help=_OUTPUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Perplexity of a model over a text file, by llama-perplexity's method.

    The file is cut into chunks of --ctx tokens, each starting with BOS, and the
    second half of every chunk is scored; the result is exp(mean negative
    log-likelihood) ± its standard error, comparable with llama-perplexity's.
    """
    from locallama.evals.perplexity import measure_perplexity

    text = _read_text(file)
    with _local_runtime(1, [model]) as runtime, _bar("perplexity") as update:
        result = measure_perplexity(runtime, model, text, ctx=ctx, chunks=chunks,
                                    threads=threads, file=str(file),
                                    progress=lambda done, total: update(done, total))
    data = result.to_json()
    _write(output, data)
    if as_json:
        print_json(data)
        return
    running = ",".join(f"[{i + 1}]{v:.4f}" for i, v in enumerate(result.chunk_perplexity))
    err_console.print(running, markup=False, highlight=False)
    typer.echo(f"{result.model}: perplexity {result.perplexity:.4f} ± "
               f"{result.perplexity_stderr:.4f} over {result.chunks} chunks of {ctx} tokens "
               f"({result.scored_tokens} tokens scored) in {result.seconds:.1f} s")


@app.command()
def bench(
    models: list[str] = typer.Argument(..., help="One or more models."),
    n_prompt: int = typer.Option(512, "--n-prompt", "-p", help="Prompt tokens (pp test)."),
    n_gen: int = typer.Option(128, "--n-gen", "-n", help="Generated tokens (tg test)."),
    repetitions: int = typer.Option(5, "--repetitions", "-r", help="Timed runs per test."),
    threads: int = typer.Option(0, "--threads", "-t", help="CPU threads (0: physical cores)."),
    concurrency: int = typer.Option(1, "--concurrency", help="Streams at once; tokens/s is "
                                    "then their aggregate."),
    output: Path = typer.Option(None, "--output", "-o", help=_OUTPUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Prompt processing (pp) and generation (tg) speed, as llama-bench measures it.

    A warm-up run, then -r timed runs of each test: pp evaluates -p fresh random
    tokens at once, tg generates -n tokens one at a time; mean ± standard
    deviation of tokens/s.  Runs go through the scheduler, as requests do.
    """
    from locallama.evals.speed import bench_json, run_bench

    results = []
    with _local_runtime(concurrency, models) as runtime:
        for model in models:
            with _bar(f"bench {model}") as update:
                results.append(run_bench(
                    runtime, model, n_prompt=n_prompt, n_gen=n_gen, repetitions=repetitions,
                    threads=threads, concurrency=concurrency,
                    progress=lambda test, done, total, update=update: update(done, total,
                                                                             test)))
            runtime.unload(model)  # the next model gets the memory, and a cold start
    data = bench_json(results, {"n_prompt": n_prompt, "n_gen": n_gen,
                                "repetitions": repetitions, "threads": threads,
                                "concurrency": concurrency})
    _write(output, data)
    if as_json:
        print_json(data)
        return
    rows = [("MODEL", "SIZE", "PARAMS", "THREADS", "STREAMS", "TEST", "T/S")]
    for result in results:
        for test in result.tests:
            rows.append((result.model, format_binary_bytes(result.size),
                         format_bench_parameter_count(result.parameters),
                         str(result.threads or "auto"), str(result.concurrency), test.test,
                         f"{test.tokens_per_second:.2f} ± {test.stddev:.2f}"))
        for warning in result.warnings:
            err_console.print(f"warning: {warning}", markup=False)
    typer.echo(columns(rows))


@app.command()
def report(
    results: list[Path] = typer.Argument(..., help="Result files from eval, perplexity "
                                         "and bench (--output)."),
    chart: Path = typer.Option(None, "--output", "-o", help="Write the chart to this PNG "
                               "(default: report.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """Set results side by side: one row per model, one PNG chart.

    Size, memory estimate, pp and tg tokens/s, perplexity and each task's main
    score, for choosing a quantization by reading rather than guessing.
    """
    from locallama.evals.report import load_report, render_chart, table

    loaded = load_report(results, _memory_lookup())
    path = render_chart(loaded, chart or Path("report.png"))
    if as_json:
        print_json({**loaded.to_json(), "chart": str(path)})
        return
    typer.echo(columns(table(loaded)))
    for note in loaded.notes:
        typer.echo(f"  {note}")
    err_console.print(f"chart: {path}", markup=False, highlight=False)


@contextmanager
def _local_runtime(parallel: int, models: list[str]) -> Iterator[Any]:
    """This process's engine with ``parallel`` sequences (more if LOCALLAMA_NUM_PARALLEL
    asks), the models in its store (a missing bundled one is pulled, as ``run`` does)."""
    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings

    settings = Settings.from_env()
    settings = dataclasses.replace(settings, num_parallel=max(parallel, settings.num_parallel))
    runtime = LocalRuntime(settings)
    try:
        for model in models:
            ensure_model(runtime, model)
        yield runtime
    finally:
        runtime.close()


@contextmanager
def _bar(title: str) -> Iterator[Any]:
    """A progress bar on stderr; yields ``update(done, total, label=None)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                   transient=True)
    task = bar.add_task(title, total=None)

    def update(done: int, total: int, label: str | None = None) -> None:
        description = f"{title} {label}" if label else title
        bar.update(task, completed=done, total=total, description=description)

    with bar:
        yield update


def _memory_lookup():
    """Memory estimates for models in the local store, by digest (eval's results carry
    none); reading the store needs no loaded model."""
    from locallama.evals.facts import memory_for_digest
    from locallama.settings import Settings
    from locallama.store import Store

    store = Store(Settings.from_env().models_dir)
    return lambda digest: memory_for_digest(store, digest)


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest(f"no file at {file}") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"{file} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidRequest(f"cannot read {file}: {exc.strerror}") from None


def _write(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"cannot write {path}: {exc.strerror}") from None


