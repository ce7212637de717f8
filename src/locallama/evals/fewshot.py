"""Few-shot prompts: lm-evaluation-harness's default sampler, reproduced.

One ``random.Random(seed)`` per task (per MMLU subject) draws the examples of each
doc in turn, in dataset order, so doc n gets what it gets in the harness only if
docs 0 .. n-1 drew before it; MMLU takes the first examples instead (``first_n``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from locallama.errors import InvalidRequest
from locallama.evals.benchmarks import FEWSHOT_DELIMITER, FEWSHOT_SEED, Prompt, Task


@dataclass
class Item:
    """One doc of the evaluation split, with its prompt built."""

    task: Task
    doc_id: int  # position in the evaluation split (within its group, for MMLU)
    doc: dict
    group: str
    prompt: Prompt


def build_items(task: Task, docs: Sequence[dict], pool: Sequence[dict], shots: int,
                limit: int | None = None, seed: int = FEWSHOT_SEED) -> list[Item]:
    """Prompts for the first ``limit`` docs (per group), few-shot examples drawn as the
    harness draws them: one generator per task (per MMLU subject), seeded once and
    drawn from doc by doc, in order."""
    items: list[Item] = []
    for group, group_docs in _groups(task, docs).items():
        group_pool = [d for d in pool if task.group(d) == group]
        draw = _sampler(task, group, group_pool, shots, random.Random(seed))
        for doc_id, doc in enumerate(group_docs[:limit] if limit is not None else group_docs):
            context = task.description(doc) + "".join(
                task.example(shot) + FEWSHOT_DELIMITER for shot in draw(doc))
            items.append(Item(task, doc_id, doc, group, task.prompt(context, doc)))
    return items


def _groups(task: Task, docs: Sequence[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for doc in docs:
        groups.setdefault(task.group(doc), []).append(doc)
    return dict(sorted(groups.items()))


def _sampler(task: Task, group: str, pool: Sequence[dict], shots: int,
             rnd: random.Random) -> Callable[[dict], list[dict]]:
    """The harness's ContextSampler.get_context draw, as a function of the doc."""
    wanted = shots + 1 if task.extra_draw else shots
    if shots and len(pool) < wanted:
        most = max(0, len(pool) - (wanted - shots))
        raise InvalidRequest(
            f"{task.name}: {shots}-shot needs {wanted} examples in the '{task.fewshot_split}' "
            f"split{f' for {group}' if group else ''}, which has {len(pool)}; "
            f"use --shots {most} or fewer")

    def draw(doc: dict) -> list[dict]:
        if not shots:
            return []
        drawn = list(pool[:wanted]) if task.first_n else rnd.sample(list(pool), wanted)
        return [d for d in drawn if d != doc][:shots]

    return draw
