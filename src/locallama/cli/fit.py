"""``locallama fit [MODEL…]``: will a model fit on this machine, and how fast will it run?

It reads the local store directly rather than asking a server: the question is
about this machine's memory, whichever process would load the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import typer

from locallama.cli.app import app
from locallama.cli.output import columns, err_console, print_json
from locallama.errors import InvalidModelName, InvalidRequest, LocallamaError, ModelNotFound
from locallama.fit import (
    Report,
    Spec,
    context_for,
    looks_like_spec,
    parse_size,
    parse_spec,
    report,
    report_spec,
)
from locallama.gguf_info import GGUFInfo, read_gguf_info
from locallama.kvcache import kv_cache_type as kv_cache_type_of
from locallama.machine import Machine, detect
from locallama.settings import Settings
from locallama.store.names import parse_name
from locallama.store.store import Store
from locallama.units import format_bytes

_SPEC_HINT = "for a model not on disk give a size and quantization, e.g. 7b:q4_k_m"


@dataclass(frozen=True)
class _Local:
    name: str
    info: GGUFInfo
    params: dict[str, Any]


@app.command()
def fit(
    models: list[str] = typer.Argument(
        None, help="Models in the store, or SIZE:QUANT such as 7b:q4_k_m; "
                   "none: every model in the store."),
    num_ctx: int = typer.Option(None, "--ctx", "--num-ctx", min=1,
                                help="Context size (default: the model's num_ctx, else 4096)."),
    parallel: int = typer.Option(1, "--parallel", min=1,
                                 help="Sequences decoded together, each with num_ctx tokens."),
    memory: str = typer.Option(None, "--memory",
                               help="Check against this size (8GB, 16 GiB) "
                                    "instead of the available RAM."),
    bandwidth: float = typer.Option(None, "--bandwidth",
                                    help="Memory bandwidth in GB/s (skips measuring it)."),
    kv_cache_type: str = typer.Option(
        None, "--kv-cache-type", help="KV cache type: f16, q8_0 or q4_0 (default: the "
                                      "model's kv_cache_type, else LOCALLAMA_KV_CACHE_TYPE)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (sizes in bytes)."),
) -> None:
    """Will a model fit? Memory needed (weights + KV cache + compute buffers) against
    this machine's RAM and GPU memory, a verdict, and the generation speed to expect."""
    if bandwidth is not None and not 0 < bandwidth < float("inf"):
        raise InvalidRequest("--bandwidth must be a positive number of GB/s")
    budget = parse_size(memory) if memory else None
    settings = Settings.from_env()
    if kv_cache_type is not None:
        kv_cache_type = kv_cache_type_of(kv_cache_type, "--kv-cache-type").name
    store = Store(settings.models_dir)
    targets = [_resolve(store, m) for m in models] if models else _all_local(store)
    machine = detect(bandwidth * 1e9 if bandwidth else None)
    if budget is None:
        budget = machine.ram_available
    gpu_budget = machine.gpu_memory_free if machine.gpus else None
    common = dict(budget=budget, bandwidth=machine.bandwidth, num_parallel=parallel,
                  gpu_budget=gpu_budget)
    rows: list[Report] = []
    for t in targets:
        if isinstance(t, Spec):
            rows.append(report_spec(t, num_ctx=context_for(t.info(), None, num_ctx),
                                    kv_cache_type=kv_cache_type or settings.kv_cache_type,
                                    **common))
        else:
            kind = kv_cache_type or t.params.get("kv_cache_type") or settings.kv_cache_type
            rows.append(report(t.name, t.info, num_ctx=context_for(t.info, t.params, num_ctx),
                               kv_cache_type=kind, **common))
    source = "--memory" if memory else "available RAM"
    if as_json:
        print_json({"machine": _machine_dict(machine), "budget": budget,
                    "budget_source": source, "models": [r.to_dict() for r in rows]})
    else:
        _print_text(machine, f"{format_bytes(budget)} ({source})", parallel, rows)


def _print_text(machine: Machine, budget: str, parallel: int, rows: list[Report]) -> None:
    typer.echo(_machine_line(machine))
    typer.echo(f"Verdicts against {budget}; KV cache for {parallel} "
               f"sequence{'s' if parallel != 1 else ''} of CTX tokens.")
    if not rows:
        typer.echo(f"\nNo models in the store; {_SPEC_HINT}.")
        return
    typer.echo()
    typer.echo(_table(rows, with_gpu=bool(machine.gpus)))
    notes = []
    if machine.gpus:
        notes.append("GPU: the same total against free GPU memory; EST. SPEED is for the "
                     "CPU (RAM bandwidth).")
    if any(r.kind == "estimate" for r in rows):
        notes.append("SIZE:QUANT rows are estimates from a typical model of that size "
                     "(--json names it).")
    if any(r.approximate for r in rows):
        notes.append("* a size between the typical ones: its shape is interpolated "
                     "(approximate).")
    if notes:
        typer.echo("\n" + "\n".join(notes))


def _resolve(store: Store, text: str) -> _Local | Spec:
    """A model in the store wins; else a SIZE:QUANT spec; else model not found."""
    try:
        name = parse_name(text)
    except InvalidModelName:
        if looks_like_spec(text):
            return parse_spec(text)
        raise
    if store.exists(name):
        record = store.get(name)
        return _Local(record.name.display, read_gguf_info(record.model_path), record.params)
    if looks_like_spec(text):
        return parse_spec(text)
    raise ModelNotFound(name.display, hint=_SPEC_HINT)


def _all_local(store: Store) -> list[_Local | Spec]:
    """Every stored model; one that cannot be read is named on stderr and skipped."""
    found: list[_Local | Spec] = []
    for entry in store.list():
        try:
            record = store.get(entry.name)
            found.append(_Local(entry.name.display, read_gguf_info(record.model_path),
                                record.params))
        except LocallamaError as exc:
            err_console.print(f"skipping {entry.name.display}: {exc}", markup=False)
    return found


def _machine_dict(m: Machine) -> dict[str, Any]:
    data = asdict(m)
    data["bandwidth"] = int(m.bandwidth)
    return data


def _machine_line(m: Machine) -> str:
    gpus = ", ".join(f"{g.name} ({format_bytes(g.memory_total)}, "
                     f"{format_bytes(g.memory_free)} free)" for g in m.gpus) or "no GPU"
    how = "measured" if m.bandwidth_measured else "given"
    return (f"This machine: {format_bytes(m.ram_total)} RAM "
            f"({format_bytes(m.ram_available)} available), "
            f"{m.cpu_cores} cores, {gpus}, memory bandwidth {m.bandwidth / 1e9:.1f} GB/s "
            f"({how})")


def _speed(tps: float | None) -> str:
    if tps is None:
        return "-"
    return f"up to {tps:.1f} tok/s" if tps < 10 else f"up to {tps:.0f} tok/s"


def _table(rows: list[Report], with_gpu: bool) -> str:
    head = ("MODEL", "QUANT", "CTX", "WEIGHTS", "KV CACHE", "TOTAL", "VERDICT")
    head += ("GPU",) if with_gpu else ()
    lines: list[tuple[str, ...]] = [(*head, "EST. SPEED")]
    for r in rows:
        e = r.fit.estimate
        cells = (r.model + (" *" if r.approximate else ""), r.quantization, str(r.fit.num_ctx),
                 format_bytes(e.weights),
                 format_bytes(e.kv_cache) + ("" if r.kv_cache_type == "f16"
                                             else f" ({r.kv_cache_type})"),
                 format_bytes(e.total),
                 r.fit.describe())
        if with_gpu:
            cells += (r.gpu.describe() if r.gpu else "-",)
        lines.append((*cells, _speed(r.tokens_per_second)))
    return columns(lines, gap=3)
