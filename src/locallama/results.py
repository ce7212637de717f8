"""Result files of ``eval``, ``perplexity`` and ``bench``, read side by side.

Reads the JSON files those commands write (the ``--output`` of each) and groups
them by model digest, so Q4_K_M, Q5_K_M and Q8_0 copies of one model each get a
row whatever their names: file size, memory estimate, prompt and generation
tokens/s, perplexity and each task's main score (the leaderboard's metric).  Plain
data, no Runtime and no plotting: ``locallama report`` (``evals/report.py``) tables
and charts it, and the server's ``/ui/api/results`` hands it to the chat page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest

#: the metric that stands for a task when the file names no ``primary`` one, first found
#: wins (the Open LLM Leaderboard's: acc_norm for ARC and HellaSwag, mc2 for
#: TruthfulQA, acc, strict exact match for GSM8k)
MAIN_METRICS = ("acc_norm", "mc2", "acc", "exact_match,strict-match", "exact_match_strict",
                "strict_match", "exact_match")


@dataclass
class Rate:
    test: str  # "pp512"
    tokens_per_second: float
    stddev: float
    concurrency: int = 1


@dataclass
class Perplexity:
    value: float
    stderr: float
    ctx: int
    file: str


@dataclass
class Score:
    metric: str
    value: float
    stderr: float | None


@dataclass
class ModelRow:
    """Everything known about one model (one digest) across the files read."""

    digest: str
    name: str
    quantization: str = ""
    size: int | None = None
    parameters: int | None = None
    memory: int | None = None
    pp: Rate | None = None
    tg: Rate | None = None
    perplexity: Perplexity | None = None
    tasks: dict[str, Score] = field(default_factory=dict)
    sample: bool = False  # task scores from the bundled sample sets, not the benchmarks
    sources: list[str] = field(default_factory=list)


@dataclass
class Report:
    rows: list[ModelRow]
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for row in self.rows for t in row.tasks))

    def to_json(self) -> dict[str, Any]:
        return {"models": [asdict(r) for r in self.rows], "tasks": self.tasks,
                "notes": self.notes}


def load_report(paths: list[Path],
                memory_for: Callable[[str], int | None] | None = None) -> Report:
    """Read result files (later files win where two say the same thing) into rows.

    ``memory_for(digest)`` fills the memory estimate of a model whose results do
    not carry one (eval's), from the local store when the model is there.
    """
    if not paths:
        raise InvalidRequest("give at least one result file")
    rows: dict[str, ModelRow] = {}
    for path in paths:
        data = _read(path)
        for record in _records(data, path):
            row = _row(rows, record)
            row.sources.append(path.name)
            kind = record["kind"]
            if kind == "bench":
                _add_bench(row, record)
            elif kind == "perplexity":
                row.perplexity = Perplexity(float(record["perplexity"]),
                                            float(record.get("perplexity_stderr") or 0.0),
                                            int(record.get("ctx") or 0),
                                            Path(str(record.get("file") or "")).name)
            else:
                _add_eval(row, record, path)
    for row in rows.values():
        if row.memory is None and memory_for is not None:
            row.memory = memory_for(row.digest)
    _label(list(rows.values()))
    return Report(list(rows.values()), _notes(list(rows.values())))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(f"no result file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"{path}: not a JSON result file ({exc})") from None


def _records(data: Any, path: Path) -> list[dict[str, Any]]:
    """Each model's part of a file, with its kind: bench files may hold several."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{path}: not a result of eval, perplexity or bench")
    kind = data.get("kind")
    results = data.get("results")
    if kind == "bench" or (kind is None and isinstance(results, list)):
        records = [{**r, "kind": "bench"} for r in results or [] if isinstance(r, dict)]
    elif kind == "perplexity" or (kind is None and "perplexity" in data):
        records = [{**data, "kind": "perplexity"}]
    elif kind == "eval" or str(data.get("schema", "")).startswith("locallama.eval/") or (
            isinstance(results, dict)):
        if not isinstance(results, dict):
            raise InvalidRequest(f"{path}: an eval result without its results")
        records = [{**data, "kind": "eval"}]
    else:
        raise InvalidRequest(f"{path}: not a result of eval, perplexity or bench")
    for record in records:
        if not record.get("digest") and not record.get("model"):
            raise InvalidRequest(f"{path}: a result without a model or digest")
    return records


def _row(rows: dict[str, ModelRow], record: dict[str, Any]) -> ModelRow:
    key = str(record.get("digest") or record.get("model"))
    row = rows.get(key)
    if row is None:
        row = rows[key] = ModelRow(digest=key, name=str(record.get("model") or key[:19]))
    row.quantization = str(record.get("quantization") or row.quantization)
    for attr in ("size", "parameters", "memory"):
        value = record.get(attr)
        if isinstance(value, int) and value > 0:
            setattr(row, attr, value)
    return row


def _add_bench(row: ModelRow, record: dict[str, Any]) -> None:
    """Single-stream rates are what compares across models; others only if alone."""
    concurrency = int(record.get("concurrency") or 1)
    for test in record.get("tests") or []:
        name = str(test.get("test", ""))
        rate = Rate(name, float(test["tokens_per_second"]), float(test.get("stddev") or 0.0),
                    concurrency)
        attr = "pp" if name.startswith("pp") else "tg" if name.startswith("tg") else None
        if attr is None:
            continue
        held = getattr(row, attr)
        if held is None or concurrency == 1 or held.concurrency != 1:
            setattr(row, attr, rate)


def _add_eval(row: ModelRow, record: dict[str, Any], path: Path) -> None:
    primary = record.get("primary") if isinstance(record.get("primary"), dict) else {}
    if record.get("sample"):
        row.sample = True
    for task, metrics in record["results"].items():
        if not isinstance(metrics, dict):
            raise InvalidRequest(f"{path}: task {task!r} has no metrics")
        metric = primary.get(task) if primary.get(task) in metrics else main_metric(metrics)
        if metric is None:
            continue
        stderr = metrics.get(f"{metric}_stderr")
        row.tasks[task] = Score(metric, float(metrics[metric]),
                                float(stderr) if isinstance(stderr, int | float) else None)


def main_metric(metrics: dict[str, Any]) -> str | None:
    """The metric that stands for a task (see MAIN_METRICS), else its first number."""
    numbers = [k for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)
               and not k.endswith("_stderr") and k != "n"]
    for name in MAIN_METRICS:
        if name in numbers:
            return name
    strict = [k for k in numbers if "strict" in k]
    return (strict or numbers or [None])[0]


def _label(rows: list[ModelRow]) -> None:
    """Two digests under one name (re-pulled, re-quantized) get their IDs added."""
    names = [r.name for r in rows]
    for row in rows:
        if names.count(row.name) > 1 and row.digest.startswith("sha256:"):
            row.name = f"{row.name} ({row.digest.removeprefix('sha256:')[:12]})"


def _notes(rows: list[ModelRow]) -> list[str]:
    notes = []
    ppl = {(r.perplexity.file, r.perplexity.ctx) for r in rows if r.perplexity}
    if len(ppl) > 1:
        notes.append("perplexities were measured on different files or contexts: "
                     "they do not compare")
    elif ppl:
        file, ctx = next(iter(ppl))
        notes.append(f"perplexity: {file or 'the text'} at a context of {ctx} tokens")
    if any(r.memory for r in rows):
        notes.append("memory: the loader's estimate at num_ctx 4096, one sequence")
    metrics = {t: s.metric for r in rows for t, s in r.tasks.items()}
    if metrics:
        notes.append("tasks: " + ", ".join(f"{t} {m}" for t, m in metrics.items())
                     + " (%, ± standard error)")
    samples = [r.name for r in rows if r.sample]
    if samples:
        notes.append("task scores of " + ", ".join(samples) + " come from the bundled "
                     "sample sets: a demonstration, not the benchmarks")
    if any((r.pp and r.pp.concurrency > 1) or (r.tg and r.tg.concurrency > 1) for r in rows):
        notes.append("some speeds are aggregates over concurrent streams")
    return notes
