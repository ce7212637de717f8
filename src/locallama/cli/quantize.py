"""``locallama quantize``: a stored model (or a GGUF file) rewritten at a smaller type."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from locallama.cli.app import app
from locallama.cli.common import get_runtime
from locallama.cli.output import columns, err_console, print_json
from locallama.errors import InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.progress import ProgressEvent
from locallama.store.modelfile import Modelfile
from locallama.units import format_bytes


@app.command()
def quantize(
    source: str = typer.Argument(None, help="A model in the store, or a .gguf file."),
    target: str = typer.Argument(None, help="The name to store the result under."),
    qtype: str = typer.Option("Q4_K_M", "--type", "-q", help="llama.cpp quantization type."),
    imatrix: Path = typer.Option(None, "--imatrix", help="Importance matrix (llama-imatrix)."),
    list_types: bool = typer.Option(False, "--list", help="List the types and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Quantize a model with llama.cpp's quantizer and store the result as a model.

    From F32, F16 or BF16 data; a quantized source is requantized, with a
    warning.  The result keeps the source's template, system message and
    parameters.
    """
    if list_types:
        from locallama.engine.quantize import quant_types

        names = list(quant_types())
        if as_json:
            print_json(names)
        else:
            typer.echo("\n".join(names))
        return
    if not source or not target:
        raise InvalidRequest("usage: locallama quantize SOURCE TARGET --type Q4_K_M")
    if imatrix is not None and not imatrix.is_file():
        raise InvalidRequest(f"no importance matrix at {imatrix}")
    runtime = get_runtime()
    before = _describe(runtime, source)
    started = time.perf_counter()
    run_create(runtime, target, Modelfile(from_=_from(source)), Path.cwd(), qtype, imatrix)
    seconds = time.perf_counter() - started
    after = _describe(runtime, target)
    report = {"model": target, "source": source, "type": after["quantization"],
              "seconds": round(seconds, 2), "before": before, "after": after,
              "ratio": round(after["size"] / before["size"], 4) if before["size"] else None}
    if as_json:
        print_json(report)
        return
    rows = [("", "TYPE", "SIZE", "BITS/WEIGHT"),
            ("before", before["quantization"], format_bytes(before["size"]),
             f"{before['bpw']:.2f}"),
            ("after", after["quantization"], format_bytes(after["size"]), f"{after['bpw']:.2f}")]
    typer.echo(columns(rows))
    typer.echo(f"{target}: {report['ratio']:.0%} of the source's size, in {seconds:.1f} s")


def run_create(runtime, model: str, modelfile: Modelfile, base_dir: Path, qtype: str | None,
               imatrix: Path | None) -> None:
    """Create (and quantize) with a bar while a safetensors folder is converted or the
    quantizer writes (one bar per step), status lines otherwise."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    bar: Progress | None = None  # the bar of the step under way
    step = task = None

    def show(event: ProgressEvent) -> None:
        nonlocal bar, step, task
        if event.total and event.status.startswith(("quantizing", "converting")):
            if event.status != step:
                if bar is not None:
                    bar.stop()
                bar = Progress(TextColumn("{task.description}"), BarColumn(),
                               TaskProgressColumn(), TimeElapsedColumn(), console=err_console)
                bar.start()
                step, task = event.status, bar.add_task(event.status, total=event.total)
            if bar is not None:
                bar.update(task, completed=event.completed or 0)
                if (event.completed or 0) >= event.total:
                    bar.stop()  # done: the full bar stays above the lines that follow
                    bar = None
        elif not (event.digest and event.total):  # uploads to a server go unshown
            err_console.print(event.status, markup=False)

    try:
        runtime.create(model, modelfile, base_dir, show, qtype, imatrix)
    finally:
        if bar is not None:
            bar.stop()


def _from(source: str) -> str:
    """A file is named by its absolute path, so the Modelfile cannot mistake it."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.is_file() else source


def _describe(runtime, name: str) -> dict:
    path = Path(name).expanduser()
    if path.is_file():
        info = read_gguf_info(path)
        size, params, label = info.file_size, info.parameter_count, info.file_type
    else:
        details = runtime.show(name)
        size, params, label = details.size, details.parameter_count, details.quantization
    return {"quantization": label, "size": size, "parameters": params,
            "bpw": round(8 * size / params, 3) if params else 0.0}
