"""``locallama eval MODEL``: the leaderboard benchmarks on this machine.

Always in-process: scoring needs ``Runtime.score``, which a server's HTTP API does
not offer, so a running server is not used (its loaded models are not shared).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from locallama.cli.answer import ensure_model
from locallama.cli.app import app
from locallama.cli.output import columns, err_console, print_json
from locallama.errors import InvalidRequest
from locallama.evals.benchmarks import FEWSHOT_SEED, TASKS, parse_tasks
from locallama.settings import Settings

TASK_HELP = ("Comma-separated tasks (default: all six): "
             + ", ".join(f"{t.name} ({t.shots}-shot)" for t in TASKS.values()) + ".")
DATA_HELP = ("Benchmark files in their published formats (Parquet or JSON Lines, the datasets' "
             "field names): a folder with one folder per task, e.g. arc_challenge/test-00000-of-"
             "00001.parquet and arc_challenge/train-00000-of-00001.parquet, or one file for one "
             "task. Without it the files are fetched from the Hugging Face hub and cached.")


@app.command("eval")
def eval_command(
    model: str = typer.Argument(..., help="A stored model, e.g. gemma3:270m"),
    tasks: str = typer.Option("all", "--tasks", "-t", help=TASK_HELP),
    shots: int = typer.Option(None, "--shots", help="Few-shot examples for every task "
                              "(default: each task's leaderboard count)."),
    limit: int = typer.Option(None, "--limit", help="Only the first N items of each task "
                              "(of each MMLU subject)."),
    seed: int = typer.Option(FEWSHOT_SEED, "--seed", help="Seed of the few-shot draw."),
    data: Path = typer.Option(None, "--data", help=DATA_HELP),
    samples: bool = typer.Option(False, "--samples", help="Run the bundled sample items (a "
                                 "demo that works offline; never the benchmark)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the results JSON, with "
                                "per-item records, to this file."),
    num_ctx: int = typer.Option(None, "--num-ctx", help="Context size (default: large enough "
                                "for the longest prompt)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results JSON instead of "
                                 "the table."),
) -> None:
    """Score a model on ARC, HellaSwag, MMLU, TruthfulQA, Winogrande and GSM8k as
    lm-evaluation-harness does (prompts, few-shot draws, metrics; see docs/evals.md).

    Runs in this process, with up to 4 questions side by side
    (LOCALLAMA_NUM_PARALLEL to change it)."""
    from locallama.evals import harness, results
    from locallama.runtime.local import LocalRuntime

    if data is not None and samples:
        raise InvalidRequest("use either --data PATH or --samples, not both")
    chosen = parse_tasks(tasks)
    settings = Settings.from_env()
    with err_console.status("loading the data"):
        runs = harness.plan(chosen, data=data, samples=samples, settings=settings, shots=shots,
                            limit=limit, seed=seed)
    runtime = LocalRuntime(settings)
    try:
        ensure_model(runtime, model)
        size = harness.context_size(runtime, model, runs, num_ctx)
        options = {"num_ctx": size}
        started, t0 = datetime.now(UTC), time.perf_counter()
        outcome = _run_with_bar(runtime, model, runs, options)
        seconds = time.perf_counter() - t0
        details = runtime.show(model)
        doc = results.document(details, outcome, options=options, limit=limit, seed=seed,
                               sample=samples, started=started, seconds=seconds,
                               num_parallel=_num_parallel(runtime))
    finally:
        runtime.close()
    if output is not None:
        results.write(output, doc)
    if as_json:
        print_json(doc)
        return
    if samples:
        typer.echo("SAMPLE ITEMS (bundled demo data, not the benchmark)")
    typer.echo(_table(results.table_rows(outcome), {r.task.name: r.shots for r in runs}))
    note = f"{details.name} ({details.quantization}) in {seconds:.1f} s"
    err_console.print(note + (f"; results in {output}" if output else
                              "; --output FILE keeps the results and per-item records"),
                      markup=False)


def _run_with_bar(runtime, model: str, runs, options: dict):
    """The harness with a progress bar and time left on stderr."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from locallama.evals import harness

    bar = Progress(TextColumn("{task.description:<15}"), BarColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[items]} items"), TextColumn("{task.fields[eta]}"),
                   console=err_console, transient=False)
    first = runs[0].task.name if runs else ""
    task_id = bar.add_task(first, total=1.0, items="0/0", eta="")

    def show(p: harness.EvalProgress) -> None:
        bar.update(task_id, description=p.task, completed=p.done, total=p.total,
                   items=f"{p.items_done}/{p.items_total}", eta=_eta(p.eta))

    with bar:
        try:
            return harness.evaluate(runtime, model, runs, options, show)
        except KeyboardInterrupt:
            bar.stop()
            err_console.print("interrupted: no results", markup=False)
            raise typer.Exit(130) from None


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "time left: estimating"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"time left: {hours}:{rest // 60:02d}:{rest % 60:02d}"


def _table(rows, shots: dict[str, int]) -> str:
    lines = [("TASK", "SHOTS", "METRIC", "N", "VALUE", "STDERR")]
    for task, metric, n, value, stderr in rows:
        lines.append((task, str(shots[task]), metric, str(n), f"{value:.4f}",
                      "-" if stderr is None else f"{stderr:.4f}"))
    return columns(lines)


def _num_parallel(runtime) -> int | None:
    """Sequences the loaded model got (the loader chooses when the setting is 0)."""
    return next((info.num_parallel for info in runtime.ps() if info.num_parallel), None)
