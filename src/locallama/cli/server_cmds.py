"""Loaded-model commands: ps and stop (they mean most against a running server)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from locallama.cli.app import app
from locallama.cli.common import get_runtime
from locallama.cli.output import columns, print_json
from locallama.runtime.types import LoadedModelInfo
from locallama.units import format_bytes


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the models loaded in memory."""
    infos = get_runtime().ps()
    if as_json:
        print_json([
            {"name": i.name, "id": _id(i.digest), "digest": i.digest, "size": i.size,
             "processor": processor(i), "context_length": i.context_length,
             "expires_at": i.expires_at.isoformat() if i.expires_at else None,
             "pid": i.pid, "rss": i.rss, "prompt_eval_count": i.prompt_eval_count,
             "prompt_cached_count": i.prompt_cached_count,
             "prompt_shared_count": i.prompt_shared_count, "kv_cache_type": i.kv_cache_type,
             "flash_attention": i.flash_attention, "repack": i.repack}
            | ({"replica": i.replica, "node": i.node} if i.replica else {})
            for i in infos
        ])
        return
    rows = [("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "PID", "RSS")]
    rows += [(i.name, _id(i.digest), format_bytes(i.size), processor(i), str(i.context_length),
              until(i.expires_at), str(i.pid) if i.pid else "-",
              format_bytes(i.rss) if i.rss else "-") for i in infos]
    if any(i.replica for i in infos):  # serve --ray: a row per replica, and its node
        rows = [(*row, *extra) for row, extra in
                zip(rows, [("REPLICA", "NODE")] + [(i.replica or "-", i.node or "-")
                                                   for i in infos], strict=True)]
    typer.echo(columns(rows))


@app.command()
def stop(model: str = typer.Argument(..., help="The model to unload.")) -> None:
    """Unload a model from memory now."""
    get_runtime().unload(model)


def processor(info: LoadedModelInfo) -> str:
    """'100% GPU', '100% CPU' or '27%/73% CPU/GPU', as ``ollama ps`` shows the split."""
    vram = info.size_vram
    if not info.size or vram <= 0:
        return "100% CPU"
    if vram >= info.size:
        return "100% GPU"
    gpu = round(100 * vram / info.size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def until(when: datetime | None, now: datetime | None = None) -> str:
    """'4 minutes from now', 'Forever' or 'Stopping...', as ``ollama ps`` words it."""
    if when is None:
        return "Forever"
    seconds = int((when - (now or datetime.now(UTC))).total_seconds())
    if seconds <= 0:
        return "Stopping..."
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= span:
            n = seconds // span
            if n == 1 and unit == "hour":
                return "About an hour from now"
            return f"{n} {unit}{'s' if n != 1 else ''} from now"
    return "Less than a minute from now"


def _id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]
