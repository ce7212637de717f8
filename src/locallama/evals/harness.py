"""Running tasks against a model: requests out through the Runtime, metrics back.

Multiple-choice tasks go through ``Runtime.score`` in one call per task, every
question's choices consecutive, so the scheduler keeps them on the slot that holds
their shared context and evaluates only each continuation, while up to
num_parallel questions run side by side.  GSM8k goes through ``Runtime.generate``
(raw prompt, greedy, the harness's stop sequences), several requests at a time.
Nothing here touches llama.cpp: a remote or fake Runtime would do as well.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest
from locallama.evals import data as datasets
from locallama.evals import metrics
from locallama.evals.benchmarks import FEWSHOT_SEED, GSM8K, Outcome, Task
from locallama.evals.fewshot import Item, build_items
from locallama.options import Options
from locallama.runtime.base import Runtime
from locallama.runtime.types import GenerateRequest
from locallama.settings import Settings

GENERATION_WEIGHT = 8000  # a generated answer costs about this many prompt characters
LONGEST_CHECKED = 8  # prompts per task whose tokens are counted to size the context


@dataclass
class EvalProgress:
    """Where a run stands; weights are characters of text the model evaluates."""

    task: str
    items_done: int
    items_total: int
    done: float
    total: float
    elapsed: float

    @property
    def eta(self) -> float | None:
        """Seconds left, from the rate so far (None before anything is done)."""
        if self.done <= 0:
            return None
        return self.elapsed * (self.total - self.done) / self.done


ProgressFn = Callable[[EvalProgress], None]


@dataclass
class TaskRun:
    """A task with its prompts built, ready to run."""

    task: Task
    shots: int
    items: list[Item]
    origin: str

    @property
    def requests(self) -> int:
        return sum(max(1, len(i.prompt.pairs)) for i in self.items)


@dataclass
class TaskResult:
    run: TaskRun
    answers: list[list[float] | str]  # per item: the choices' log-likelihoods, or the text
    outcomes: list[Outcome]
    seconds: float
    values: dict[str, float] = field(default_factory=dict)
    stderrs: dict[str, float | None] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # MMLU's subjects


def plan(tasks: list[Task], *, data: Path | None = None, samples: bool = False,
         settings: Settings | None = None, shots: int | None = None, limit: int | None = None,
         seed: int = FEWSHOT_SEED) -> list[TaskRun]:
    """Load each task's data and build its prompts (``shots`` overrides the defaults)."""
    if data is not None and data.is_file() and len(tasks) != 1:
        raise InvalidRequest("--data FILE holds one task's split: name that task with --tasks")
    if limit is not None and limit < 1:
        raise InvalidRequest("--limit must be at least 1")
    if shots is not None and shots < 0:
        raise InvalidRequest("--shots must be 0 or more")
    runs = []
    for task in tasks:
        n = task.shots if shots is None else shots
        loaded = datasets.load(task, data=data, samples=samples, settings=settings, shots=n)
        items = build_items(task, loaded.docs, loaded.fewshot, n, limit, seed)
        runs.append(TaskRun(task, n, items, loaded.origin))
    return runs


def context_size(runtime: Runtime, model: str, runs: list[TaskRun],
                 wanted: int | None = None) -> int:
    """A num_ctx that holds the longest prompt (with room for GSM8k's answer).

    The longest prompts by characters are tokenized; the rest get a 5% margin.
    Beyond the model's own context length a run cannot be honest, so that is an
    error rather than a silent truncation."""
    details = runtime.show(model)
    longest, where = 0, ""
    for run in runs:
        texts = sorted(_texts(run), key=len, reverse=True)[:LONGEST_CHECKED]
        room = GSM8K.max_tokens if run.task.generation else 1
        for text in texts:
            tokens = len(runtime.tokenize(model, text)) + room
            if tokens > longest:
                longest, where = tokens, run.task.name
    cap = details.context_length or max(longest, 1)
    if longest > cap:
        raise InvalidRequest(f"the longest {where} prompt needs {longest} tokens, more than "
                             f"{model}'s context length ({cap}); use fewer --shots")
    if wanted is not None:
        if wanted < longest:
            raise InvalidRequest(f"--num-ctx {wanted} is too small: the longest {where} "
                                 f"prompt needs {longest} tokens")
        return wanted
    base = int(details.parameters.get("num_ctx") or Options().num_ctx)
    need = -(-int(longest * 1.05 + 16) // 256) * 256
    return min(max(base, need), cap)


def _texts(run: TaskRun) -> list[str]:
    out = []
    for item in run.items:
        if item.prompt.generate is not None:
            out.append(item.prompt.generate)
        out += [c + x for c, x in item.prompt.pairs]
    return out


def evaluate(runtime: Runtime, model: str, runs: list[TaskRun], options: dict[str, Any],
             progress: ProgressFn | None = None, workers: int = 4) -> list[TaskResult]:
    """Run every task and compute its metrics."""
    weights = [_weights(run) for run in runs]
    total = sum(sum(w) for w in weights) or 1.0
    items_total = sum(len(r.items) for r in runs)
    started = time.perf_counter()
    base, items_base, results = 0.0, 0, []

    for run, weight in zip(runs, weights, strict=True):
        def report(done_weight: float, items_done: int, run: TaskRun = run,
                   base: float = base, items_base: int = items_base) -> None:
            if progress:
                progress(EvalProgress(run.task.name, items_base + items_done, items_total,
                                      base + done_weight, total,
                                      time.perf_counter() - started))

        t0 = time.perf_counter()
        if run.task.generation:
            answers: list[list[float] | str] = list(
                _generate_all(runtime, model, run, options, weight, report, workers))
        else:
            answers = list(_score_all(runtime, model, run, options, weight, report))
        result = TaskResult(run, answers, [], time.perf_counter() - t0)
        result.outcomes = [run.task.score(i.doc, i.prompt, a)
                           for i, a in zip(run.items, answers, strict=True)]
        _aggregate(result)
        results.append(result)
        report(sum(weight), len(run.items))
        base += sum(weight)
        items_base += len(run.items)
    return results


def _weights(run: TaskRun) -> list[float]:
    """Per item: characters the model must evaluate (a shared context once)."""
    out = []
    for item in run.items:
        if item.prompt.generate is not None:
            out.append(len(item.prompt.generate) + GENERATION_WEIGHT)
            continue
        seen, weight = None, 0
        for context, continuation in item.prompt.pairs:
            weight += len(continuation) + (len(context) if context != seen else 0)
            seen = context
        out.append(float(weight))
    return out


def _score_all(runtime: Runtime, model: str, run: TaskRun, options: dict[str, Any],
               weight: list[float], report: Callable[[float, int], None]) -> list[list[float]]:
    pairs = [pair for item in run.items for pair in item.prompt.pairs]
    # pairs done -> (weight done, items done), assuming pairs finish roughly in order
    marks: list[tuple[float, int]] = [(0.0, 0)]
    for n, item in enumerate(run.items):
        w = weight[n] / max(1, len(item.prompt.pairs))
        for _ in item.prompt.pairs:
            marks.append((marks[-1][0] + w, marks[-1][1]))
        marks[-1] = (marks[-1][0], n + 1)

    def on_progress(count: int) -> None:
        report(*marks[min(count, len(marks) - 1)])

    scores = runtime.score(model, pairs, options, on_progress)
    answers, at = [], 0
    for item in run.items:
        n = len(item.prompt.pairs)
        answers.append([s.logprob for s in scores[at:at + n]])
        at += n
    return answers


def _generate_all(runtime: Runtime, model: str, run: TaskRun, options: dict[str, Any],
                  weight: list[float], report: Callable[[float, int], None],
                  workers: int) -> list[str]:
    task = run.task
    assert isinstance(task, GSM8K)
    wanted = {**options, "temperature": 0.0, "num_predict": task.max_tokens,
              "stop": list(task.stop), "repeat_penalty": 1.0, "seed": 0}

    def generate(prompt: str) -> str:
        request = GenerateRequest(model, prompt, raw=True, options=wanted, truncate=False,
                                  shift=False)
        return "".join(chunk.text for chunk in runtime.generate(request))

    answers: list[str] = [""] * len(run.items)
    done_weight, done = 0.0, 0
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="eval") as pool:
        futures = {pool.submit(generate, item.prompt.generate or ""): n
                   for n, item in enumerate(run.items)}
        for future in as_completed(futures):
            n = futures[future]
            answers[n] = future.result()
            done_weight, done = done_weight + weight[n], done + 1
            report(done_weight, done)
    return answers


def _aggregate(result: TaskResult) -> None:
    """Means and standard errors; a grouped task (MMLU) is the size-weighted mean of its
    groups with the harness's pooled standard error."""
    task, items = result.run.task, result.run.items
    by_group: dict[str, list[int]] = {}
    for n, item in enumerate(items):
        by_group.setdefault(item.group, []).append(n)
    for metric in task.metrics:
        values = [o.metrics[metric] for o in result.outcomes]
        result.values[metric] = metrics.mean(values)
        if len(by_group) > 1 or (by_group and next(iter(by_group)) != ""):
            sizes, errs = [], []
            for group, members in by_group.items():
                group_values = [values[n] for n in members]
                err = metrics.mean_stderr(group_values)
                entry = result.groups.setdefault(group, {"n": len(members)})
                entry[metric] = metrics.mean(group_values)
                entry[f"{metric}_stderr"] = err
                sizes.append(len(members))
                errs.append(err)
            result.stderrs[metric] = metrics.pooled_stderr(errs, sizes)
        else:
            result.stderrs[metric] = metrics.mean_stderr(values)


def prompt_id(item: Item) -> str:
    """A short hash of everything the item sends, to match items across runs."""
    text = item.prompt.generate or "\x00".join(c + "\x01" + x for c, x in item.prompt.pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
