"""Model management commands: pull, list, show, cp, rm, create."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from locallama.api.ollama import message_json
from locallama.cli.app import app
from locallama.cli.common import get_runtime
from locallama.cli.output import (
    age,
    columns,
    console,
    err_console,
    print_json,
    transfer_bars,
)
from locallama.errors import InvalidRequest
from locallama.store.modelfile import parse_modelfile
from locallama.units import format_bytes, format_parameter_count


@app.command()
def pull(model: str = typer.Argument(..., help="Model name, e.g. gemma3:270m"),
         insecure: bool = typer.Option(False, "--insecure",
                                       help="Allow a registry that speaks plain HTTP")
         ) -> None:
    """Pull a model into the store (from an Ollama registry, resuming a cut download)."""
    runtime = get_runtime()
    bars = transfer_bars()
    tasks: dict[str, object] = {}
    live = [False]

    def show(event) -> None:
        if event.digest and event.total:  # a blob: one bar each, as Ollama draws them
            if not live[0]:
                bars.start()  # only now: a pull that fails early prints one line
                live[0] = True
            if event.digest not in tasks:
                tasks[event.digest] = bars.add_task(event.status, total=event.total)
            bars.update(tasks[event.digest], completed=event.completed or 0)
        elif event.status != "pulling manifest":
            if live[0]:
                bars.stop()  # the bars stay on screen above what follows
                live[0] = False
            err_console.print(event.status)

    try:
        runtime.pull(model, progress=show, insecure=insecure)
    finally:
        if live[0]:
            bars.stop()


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the models in the store (a broken one is marked BROKEN, with the reason)."""
    entries = get_runtime().list()
    if as_json:
        print_json([
            {"name": e.name.display, "model": e.name.display, "id": e.id, "digest": e.digest,
             "size": e.size, "modified_at": e.modified.isoformat(),
             **({"broken": e.broken} if e.broken else {})}
            for e in entries
        ])
        return
    any_broken = any(e.broken for e in entries)
    rows = [("NAME", "ID", "SIZE", "MODIFIED") + (("STATUS",) if any_broken else ())]
    rows += [(e.name.display, e.id, format_bytes(e.size), age(e.modified))
             + ((f"BROKEN: {e.broken}" if e.broken else "",) if any_broken else ())
             for e in entries]
    typer.echo(columns(rows))
    if any_broken:
        err_console.print("a BROKEN model cannot run; 'locallama rm NAME' removes it",
                          markup=False)


app.command("ls", hidden=True)(list_models)


@app.command()
def show(
    model: str,
    modelfile: bool = typer.Option(False, "--modelfile", help="Print the Modelfile."),
    template: bool = typer.Option(False, "--template", help="Print the template."),
    system: bool = typer.Option(False, "--system", help="Print the system message."),
    parameters: bool = typer.Option(False, "--parameters", help="Print the parameters."),
    license_: bool = typer.Option(False, "--license", help="Print the license."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show information about a model."""
    d = get_runtime().show(model)
    if as_json:
        # messages as they were stored: role and content (and what else is set)
        print_json({**dataclasses.asdict(d), "messages": [message_json(m) for m in d.messages]})
    elif modelfile:
        typer.echo(d.modelfile)
    elif template:
        typer.echo(d.template or "")
    elif system:
        typer.echo(d.system or "")
    elif parameters:
        typer.echo(_parameter_lines(d.parameters))
    elif license_:
        typer.echo("\n\n".join(d.licenses))
    else:
        _print_details(d)


def _parameter_lines(params: dict) -> str:
    lines = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<16}{_quote(v)}")
    return "\n".join(lines)


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _print_details(d) -> None:
    rows = [
        ("architecture", d.architecture),
        ("parameters", format_parameter_count(d.parameter_count)),
        ("context length", d.context_length),
        ("embedding length", d.embedding_length),
        ("quantization", d.quantization),
    ]
    console.print("  Model")
    for label, value in rows:
        if value is not None:
            console.print(f"    {label:<20}{value}")
    if d.capabilities:  # as ollama show prints them: a vision model's is seen here
        console.print("\n  Capabilities")
        for capability in d.capabilities:
            console.print(f"    {capability}", markup=False)
    if d.projector_info:
        info = d.projector_info
        console.print("\n  Projector")
        for label, key in (("architecture", "general.architecture"),
                           ("embedding length", "clip.vision.embedding_length"),
                           ("dimensions", "clip.vision.projection_dim")):
            if info.get(key) is not None:
                console.print(f"    {label:<20}{info[key]}", markup=False)
    if d.parameters:
        console.print("\n  Parameters")
        for line in _parameter_lines(d.parameters).splitlines():
            console.print(f"    {line}", markup=False)
    if d.system:
        console.print("\n  System")
        console.print(f"    {_first_lines(d.system)}", markup=False)
    if d.licenses:
        console.print("\n  License")
        console.print(f"    {_first_lines(d.licenses[0])}", markup=False)
    console.print()


def _first_lines(text: str, n: int = 2) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    shown = "\n    ".join(lines[:n])
    return shown + ("\n    ..." if len(lines) > n else "")


@app.command()
def create(
    model: str,
    file: Path = typer.Option(Path("Modelfile"), "--file", "-f", help="Path to the Modelfile."),
    quantize: str = typer.Option(None, "--quantize", "-q",
                                 help="Quantize the model data to this type (e.g. Q4_K_M)."),
) -> None:
    """Create a model from a Modelfile."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest(f"no Modelfile at {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {file}: {exc}") from None
    modelfile = parse_modelfile(text)  # a broken Modelfile fails before any work
    runtime = get_runtime()
    base_dir = file.resolve().parent
    if quantize or (base_dir / Path(modelfile.from_).expanduser()).is_dir():  # a bar
        from locallama.cli.quantize import run_create

        run_create(runtime, model, modelfile, base_dir, quantize, None)
        err_console.print("success")
        return
    with err_console.status("gathering model components") as status:
        runtime.create(model, modelfile, file.resolve().parent,
                       progress=lambda event: status.update(event.status))
    err_console.print("success")


@app.command("cp")
def copy(source: str, destination: str) -> None:
    """Copy a model under a new name."""
    get_runtime().copy(source, destination)
    console.print(f"copied '{source}' to '{destination}'", markup=False)


@app.command("rm")
def remove(models: list[str] = typer.Argument(..., help="Models to remove.")) -> None:
    """Remove models (and the blobs no other model uses)."""
    runtime = get_runtime()
    for model in models:
        runtime.delete(model)
        console.print(f"deleted '{model}'", markup=False)


def sweep_message(swept) -> str | None:
    """What ``Store.sweep`` did (a ``partials.Swept``) in a line or two, or None."""
    lines = []
    if swept.removed:
        files = "file" if swept.removed == 1 else "files"
        lines.append(f"removed {swept.removed} partial {files} ({format_bytes(swept.freed)}) "
                     "left by a stopped process")
    if swept.kept:
        downloads = "download" if swept.kept == 1 else "downloads"
        lines.append(f"kept {swept.kept} unfinished {downloads} "
                     f"({format_bytes(swept.kept_bytes)}) for the next pull to resume")
    return "\n".join(lines) or None
