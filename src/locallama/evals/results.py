"""The results of a run: a table for people and one JSON document for tools.

The JSON document (``schema`` "locallama.eval/1") is what ``locallama report``
reads: ``model``, ``digest``, ``quantization``, ``size`` (bytes), and
``results[task][metric]`` with ``results[task][metric + "_stderr"]`` (null where
undefined, under two items).  The rest records how the numbers were made:
options, shots, limit, seed, data origin, versions, timings, and per-item
``records``.  A run on the bundled samples says ``"sample": true`` and is never
the benchmark.  docs/evals.md describes every field.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from locallama import __version__
from locallama.evals.benchmarks import Outcome
from locallama.evals.fewshot import Item
from locallama.evals.harness import TaskResult, prompt_id
from locallama.runtime.types import ModelDetails

SCHEMA = "locallama.eval/1"
REFERENCE = "lm-evaluation-harness task definitions (v0.4 YAML)"


def table_rows(results: list[TaskResult]) -> list[tuple[str, str, int, float, float | None]]:
    """(task, metric, n, value, stderr) for each task and metric, in run order."""
    rows = []
    for result in results:
        for metric in result.run.task.metrics:
            rows.append((result.run.task.name, metric, len(result.outcomes),
                         result.values[metric], result.stderrs[metric]))
    return rows


def document(details: ModelDetails, results: list[TaskResult], *, options: dict[str, Any],
             limit: int | None, seed: int, sample: bool, started: datetime, seconds: float,
             num_parallel: int | None = None, records: bool = True) -> dict[str, Any]:
    """The results file's content."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "sample": sample,
        "model": details.name,
        "digest": details.digest,
        "quantization": details.quantization,
        "size": details.size,
        "parameters": details.parameter_count,
        "architecture": details.architecture,
        "options": options,
        "num_parallel": num_parallel,
        "tasks": [r.run.task.name for r in results],
        "shots": {r.run.task.name: r.run.shots for r in results},
        "limit": limit,
        "seed": seed,
        "data": {r.run.task.name: r.run.origin for r in results},
        "primary": {r.run.task.name: r.run.task.primary for r in results},
        "versions": versions(),
        "started_at": started.astimezone(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "timings": {r.run.task.name: {"seconds": round(r.seconds, 3), "items": len(r.outcomes),
                                      "requests": r.run.requests} for r in results},
        "results": {r.run.task.name: _metrics(r) for r in results},
        "groups": {r.run.task.name: r.groups for r in results if r.groups},
    }
    if records:
        doc["records"] = {r.run.task.name: [_record(i, a, o) for i, a, o in zip(
            r.run.items, r.answers, r.outcomes, strict=True)] for r in results}
    return doc


def _metrics(result: TaskResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in result.run.task.metrics:
        out[metric] = result.values[metric]
        out[f"{metric}_stderr"] = result.stderrs[metric]
    out["n"] = len(result.outcomes)
    return out


def _record(item: Item, answer: list[float] | str, outcome: Outcome) -> dict[str, Any]:
    record: dict[str, Any] = {"doc_id": item.doc_id, "prompt_id": prompt_id(item)}
    if item.group:
        record["group"] = item.group
    if "id" in item.doc:
        record["id"] = item.doc["id"]
    if isinstance(answer, list):
        record["logliks"] = answer
    record.update(prediction=outcome.prediction, gold=outcome.gold, correct=outcome.correct)
    record.update(outcome.extra)
    if len(outcome.metrics) == 1 and "mc2" in outcome.metrics:
        record["mc2"] = outcome.metrics["mc2"]
    return record


def versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"locallama": __version__, "llama_cpp_python": version("llama_cpp_python"),
            "python": platform.python_version(), "reference": REFERENCE}


def write(path: Path, doc: dict[str, Any]) -> None:
    """Atomically: a temporary file beside the target, then a rename."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=1, default=str)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
