"""A thinking chat template for the tiny model, and a scheduler that says what a test
scripts (the random-weight model's own output is noise).

``THINKING_TEMPLATE`` is ChatML with Qwen3's switches: ``enable_thinking`` false
closes an empty ``<think>`` block in the prompt, an assistant turn's
``reasoning_content`` is rendered back, tools are listed and calls are taught as
``<tool_call>`` blocks. ``OPENED_TEMPLATE`` opens ``<think>`` in the generation
prompt, as DeepSeek-R1's does. ``scripted(monkeypatch, pieces)`` makes every
in-process scheduler answer with ``pieces`` (recording each job), so exact parsing
goes through the real ``_run`` and faces.
"""

from __future__ import annotations

from pathlib import Path

from locallama.engine.job import Job, Piece
from locallama.engine.scheduler import Scheduler
from runtimes import local_runtime

TURNS = (
    "{% if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t.function.name }} "
    "{% endfor %}Call one as <tool_call>{\"name\": …, \"arguments\": …}</tool_call>"
    "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.reasoning_content %}<think>\n{{ m.reasoning_content }}\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
)
THINKING_TEMPLATE = TURNS + (
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}")
OPENED_TEMPLATE = TURNS + (
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    "{# the answer follows </think> #}")


def thinking_runtime(home: Path, gguf: Path, **settings):
    """A LocalRuntime (models in this process) with "thinker" (THINKING_TEMPLATE),
    "opener" (OPENED_TEMPLATE) and "plain" (ChatML, no thinking)."""
    return local_runtime(home, ("thinker", gguf, f'TEMPLATE """{THINKING_TEMPLATE}"""\n'),
                         ("opener", gguf, f'TEMPLATE """{OPENED_TEMPLATE}"""\n'),
                         ("plain", gguf), runner="inprocess", **settings)


def scripted(monkeypatch, pieces: list[str]) -> list[Job]:
    """Every Scheduler.submit answers ``pieces`` (then stops); returns the jobs seen."""
    jobs: list[Job] = []

    def submit(self, job: Job):
        jobs.append(job)
        job.stats.done_reason = "stop"
        job.stats.eval_count = len(pieces)
        return (Piece(p) for p in pieces)

    monkeypatch.setattr(Scheduler, "submit", submit)
    return jobs
