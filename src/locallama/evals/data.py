"""Benchmark data: local files in the published formats, the hub, or the samples.

Rows keep the datasets' own field names, read from Parquet (the format the hub
publishes) or JSON Lines.  Where a task's files are found under ``--data PATH``:

- PATH is a folder; the task's folder is ``PATH/<task>`` (``PATH/arc_challenge``)
  or ``PATH/<hub dataset name>`` (``PATH/ai2_arc``), or PATH itself.  When that
  folder has a subfolder named for the hub config (``ARC-Challenge``, ``all``,
  ``main``, ``multiple_choice``, ``winogrande_xl``, ``default``), that is used: a
  clone or snapshot of the hub repository works as it is.
- A split's files, in that folder: ``<split>.parquet``, ``<split>.jsonl``, shards
  ``<split>-00000-of-00001.parquet`` (the hub's names), or ``<split>/*.parquet``
  (the hub's converted layout); or, flat in PATH, ``<task>.<split>.jsonl`` (the
  bundled samples' layout).  Shards are read in name order.
- PATH may be one file (with one task): it is the evaluation split, and the
  few-shot split is looked for beside it by the rules above.

Without ``--data``, the hub's Parquet files are fetched with huggingface_hub (the
hub cache, at ``LOCALLAMA_HF_ENDPOINT``), so a second run works offline.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from locallama.errors import InvalidRequest, PullError
from locallama.evals.benchmarks import Task
from locallama.quiet import quiet_logger
from locallama.settings import Settings

SAMPLES = Path(__file__).resolve().parent / "samples"
SUFFIXES = (".parquet", ".jsonl")


@dataclass
class TaskData:
    """A task's evaluation split and the split its few-shot examples come from."""

    docs: list[dict[str, Any]]
    fewshot: list[dict[str, Any]]
    origin: str  # where the rows came from, for the results file


def load(task: Task, *, data: Path | None = None, samples: bool = False,
         settings: Settings | None = None, shots: int = 0) -> TaskData:
    """The task's rows, from ``data``, the bundled samples, or the hub."""
    if samples:
        return _local(task, SAMPLES, shots, "samples")
    if data is not None:
        if not data.exists():
            raise InvalidRequest(f"no data at {data}")
        return _local(task, data, shots, str(data))
    return _hub(task, settings or Settings.from_env(), shots)


def read_rows(path: Path, task: Task) -> list[dict[str, Any]]:
    """Rows of one Parquet or JSON Lines file, each checked against the task's fields."""
    if path.suffix == ".parquet":
        rows = _read_parquet(path)
    elif path.suffix == ".jsonl":
        rows = _read_jsonl(path)
    else:
        raise InvalidRequest(f"{path}: not a .parquet or .jsonl file")
    for number, row in enumerate(rows, 1):
        problem = task.check(row)
        if problem:
            raise InvalidRequest(f"{path}: row {number}: {problem} (for {task.name})")
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise InvalidRequest(f"{path}: not a readable Parquet file ({exc})") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: cannot read it ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}: line {number} is not JSON ({exc.msg})") from None
    return rows


# -- local files -------------------------------------------------------------------


def _local(task: Task, path: Path, shots: int, origin: str) -> TaskData:
    if path.is_file():
        root = folder = path.parent
        docs = read_rows(path, task)
    else:
        root, folder = path, _task_folder(task, path)
        docs = [row for f in _split_files(task, root, folder, task.eval_split)
                for row in read_rows(f, task)]
    if not docs:
        raise InvalidRequest(f"no rows for {task.name} in {path}")
    if task.fewshot_split == task.eval_split:
        fewshot = docs
    elif shots > 0:
        fewshot = [row for f in _split_files(task, root, folder, task.fewshot_split)
                   for row in read_rows(f, task)]
    else:
        fewshot = []
    return TaskData(docs, fewshot, origin)


def _task_folder(task: Task, root: Path) -> Path:
    names = (task.name, task.hub.repo.rsplit("/", 1)[-1])
    folder = next((root / n for n in names if (root / n).is_dir()), root)
    config = folder / task.hub.config
    return config if config.is_dir() else folder


def _split_files(task: Task, root: Path, folder: Path, split: str) -> list[Path]:
    found: list[Path] = []
    for suffix in SUFFIXES:
        found += [p for p in (folder / f"{split}{suffix}",) if p.is_file()]
        found += sorted(folder.glob(f"{split}-*{suffix}"))
        found += sorted((folder / split).glob(f"*{suffix}")) if (folder / split).is_dir() else []
        found += [p for p in (root / f"{task.name}.{split}{suffix}",) if p.is_file()]
        if found:
            return found
    raise InvalidRequest(
        f"no '{split}' split for {task.name} under {root} (looked for {split}.parquet, "
        f"{split}-*.parquet, {split}/*.parquet or .jsonl in {folder}, and "
        f"{task.name}.{split}.jsonl); see 'locallama eval --help'")


# -- the hub -----------------------------------------------------------------------


def _hub(task: Task, settings: Settings, shots: int) -> TaskData:
    docs = read_rows(fetch(task, task.eval_split, settings), task)
    if task.fewshot_split == task.eval_split:
        fewshot = docs
    elif shots > 0:
        fewshot = read_rows(fetch(task, task.fewshot_split, settings), task)
    else:
        fewshot = []
    return TaskData(docs, fewshot, f"{settings.hf_endpoint}/datasets/{task.hub.repo}")


def fetch(task: Task, split: str, settings: Settings) -> Path:
    """One split's Parquet file from the hub, through huggingface_hub's cache (so a
    file fetched once is there offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    hub = task.hub
    # huggingface_hub retries a refused connection for about 20 s, logging each try;
    # a quick probe sends an offline machine straight to the cache instead.
    offline = not reachable(settings.hf_endpoint)
    for revision, filename in hub.candidates(split):
        try:
            with quiet_logger("huggingface_hub"):
                return Path(hf_hub_download(
                    hub.repo, filename, repo_type="dataset", revision=revision,
                    endpoint=settings.hf_endpoint, cache_dir=settings.hf_hub_cache,
                    local_files_only=offline))
        except (LocalEntryNotFoundError, OfflineModeIsEnabled):
            offline = True  # and not in the cache: perhaps the next candidate is
        except EntryNotFoundError:
            continue
        except (HfHubHTTPError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PullError(f"fetching {hub.repo} from {settings.hf_endpoint} failed: "
                            f"{reason}; pass --data PATH, or --samples for the bundled "
                            "samples") from None
    if offline:
        raise InvalidRequest(
            f"no {task.name} data: {settings.hf_endpoint} cannot be reached and the Hugging "
            f"Face cache has no copy of {hub.repo}; download its Parquet files and pass "
            "--data PATH, or run the bundled samples with --samples")
    raise PullError(f"{hub.repo} has no '{split}' split at {settings.hf_endpoint}; "
                    "download it and pass --data PATH")


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the endpoint's host accepts a connection (assumed, behind a proxy)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                       "http_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
