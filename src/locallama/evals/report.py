"""Several measurements side by side: one table and one chart, one model per row.

The files are read and grouped by ``locallama/results.py`` (by model digest, so
Q4_K_M, Q5_K_M and Q8_0 copies of one model each get a row whatever their names);
this module prints them as a table and draws them as a PNG.  A model with only
some measurements shows "-" for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest
from locallama.results import (  # noqa: F401  (re-exported: report's readers import here)
    MAIN_METRICS,
    ModelRow,
    Perplexity,
    Rate,
    Report,
    Score,
    load_report,
    main_metric,
)
from locallama.units import format_bytes


def table(report: Report) -> list[tuple[str, ...]]:
    """Header and one line per model, for ``columns``."""
    pp_name = _common([r.pp.test for r in report.rows if r.pp], "PP")
    tg_name = _common([r.tg.test for r in report.rows if r.tg], "TG")
    header = ("MODEL", "QUANT", "SIZE", "MEMORY", f"{pp_name} t/s", f"{tg_name} t/s",
              "PERPLEXITY", *(t.upper() for t in report.tasks))
    lines = [header]
    for row in report.rows:
        lines.append((
            row.name, row.quantization or "-",
            format_bytes(row.size) if row.size else "-",
            format_bytes(row.memory) if row.memory else "-",
            _rate(row.pp), _rate(row.tg),
            f"{row.perplexity.value:.4f} ± {row.perplexity.stderr:.4f}" if row.perplexity
            else "-",
            *(_score(row.tasks.get(t)) for t in report.tasks)))
    return lines


def render_chart(report: Report, path: Path) -> Path:
    """One PNG: a panel per measure that any model has, the models as bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report.rows
    names = [r.name for r in rows]
    panels: list[tuple[str, Callable[[Any], None]]] = []

    def bars(ax, values, errors=None, fmt="{:.1f}") -> None:
        xs = range(len(names))
        heights = [v if v is not None else 0.0 for v in values]
        errs = [e or 0.0 for e in errors] if errors else None
        drawn = ax.bar(xs, heights, yerr=errs, capsize=4, color="#4c72b0")
        ax.bar_label(drawn, labels=[fmt.format(v) if v is not None else "n/a"
                                    for v in values], fontsize=8)
        ax.set_xticks(list(xs), names, rotation=20, ha="right", fontsize=8)

    if any(r.size or r.memory for r in rows):
        def sizes(ax) -> None:
            xs = list(range(len(names)))
            ax.bar([x - 0.2 for x in xs], [(r.size or 0) / 1e9 for r in rows], 0.4,
                   label="file", color="#4c72b0")
            ax.bar([x + 0.2 for x in xs], [(r.memory or 0) / 1e9 for r in rows], 0.4,
                   label="memory (est.)", color="#dd8452")
            ax.set_xticks(xs, names, rotation=20, ha="right", fontsize=8)
            ax.set_ylabel("GB")
            ax.legend(fontsize=8)
        panels.append(("Size and memory", sizes))
    for attr, title in (("pp", "Prompt processing"), ("tg", "Generation")):
        rates = [getattr(r, attr) for r in rows]
        if any(rates):
            test = _common([x.test for x in rates if x], attr)
            panels.append((f"{title} {test} (tokens/s, higher is better)",
                           lambda ax, rates=rates: bars(
                               ax, [x.tokens_per_second if x else None for x in rates],
                               [x.stddev if x else None for x in rates])))
    if any(r.perplexity for r in rows):
        panels.append(("Perplexity (lower is better)", lambda ax: bars(
            ax, [r.perplexity.value if r.perplexity else None for r in rows],
            [r.perplexity.stderr if r.perplexity else None for r in rows], "{:.2f}")))
    if report.tasks:
        panels.append(("Task scores (%, higher is better)",
                       lambda ax: _task_bars(ax, report, names)))
    if not panels:
        raise InvalidRequest("the results hold nothing to chart")
    cols = 2 if len(panels) > 1 else 1
    nrows = (len(panels) + cols - 1) // cols
    figure = Figure(figsize=(6 * cols, 3.8 * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    for i, (title, draw) in enumerate(panels):
        ax = figure.add_subplot(nrows, cols, i + 1)
        ax.set_title(title, fontsize=10)
        draw(ax)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _task_bars(ax, report: Report, names: list[str]) -> None:
    tasks = report.tasks
    scored = [(name, row) for name, row in zip(names, report.rows, strict=True) if row.tasks]
    width = 0.8 / len(scored)
    for i, (name, row) in enumerate(scored):
        scores = [row.tasks.get(t) for t in tasks]
        xs = [k + (i - (len(scored) - 1) / 2) * width for k in range(len(tasks))]
        ax.bar(xs, [_percent(s.value) if s else 0.0 for s in scores], width,
               yerr=[_percent(s.stderr) if s and s.stderr else 0.0 for s in scores],
               capsize=3, label=name)
    ax.set_xticks(list(range(len(tasks))), tasks, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)


def _common(names: list[str], fallback: str) -> str:
    return names[0] if names and all(n == names[0] for n in names) else fallback.upper()


def _rate(rate: Rate | None) -> str:
    return f"{rate.tokens_per_second:.2f} ± {rate.stddev:.2f}" if rate else "-"


def _percent(value: float) -> float:
    return value * 100 if -1.0 <= value <= 1.0 else value


def _score(score: Score | None) -> str:
    if score is None:
        return "-"
    text = f"{_percent(score.value):.1f}"
    return f"{text} ± {_percent(score.stderr):.1f}" if score.stderr is not None else text
