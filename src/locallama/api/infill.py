"""llama-server's ``POST /infill`` as wire shapes: the body in, the answers out.

The body (https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md,
"POST /infill"): ``input_prefix``, ``input_suffix``, ``input_extra``
(``[{filename, text}]``: other files, repository-level context), ``prompt`` (text
after the prefix: the cursor's line so far) and /completion's sampling fields
(``n_predict``, ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``seed``, ``stop``,
``repeat_penalty``, ...), ``stream``.  Fields editors send that change nothing here
(``cache_prompt``, ``samplers``, ``t_max_*``, ``n_indent``, ``id_slot``) are accepted
and ignored.

The answer is /completion's: ``{content, stop, tokens_predicted, tokens_evaluated,
stop_type, truncated, timings, ...}``; streamed, each server-sent event is
``{content, stop: false, index, tokens}`` and the last one has ``stop: true`` and the
counts (no ``[DONE]``, as llama-server's non-OpenAI streams).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from locallama.api.common import UnicodeBody
from locallama.runtime.types import Chunk, GenerateRequest, Infill

JSON = dict[str, Any]

#: llama-server's sampling fields and the Ollama option each one is
_OPTIONS = {"n_predict": "num_predict", "temperature": "temperature", "top_k": "top_k",
            "top_p": "top_p", "min_p": "min_p", "typical_p": "typical_p", "seed": "seed",
            "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
            "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "mirostat": "mirostat",
            "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta"}


class ExtraFile(UnicodeBody):
    """One ``input_extra`` item: another file's name and text."""

    filename: str = "tmp"  # llama-server's default
    text: str = ""


class InfillBody(UnicodeBody):
    """The ``/infill`` body; unknown fields are ignored, as llama-server does."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraFile] = Field(default_factory=list)
    prompt: str = ""
    stream: bool = False
    stop: list[str] | None = None
    n_predict: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    seed: int | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None


def infill_request(body: InfillBody, model: str) -> GenerateRequest:
    """The Runtime's request: the prefix as ``prompt``, ``suffix``, and an ``Infill``
    with the extra files and the prompt under llama-server's take limits."""
    options: dict[str, Any] = {}
    for field, option in _OPTIONS.items():
        value = getattr(body, field)
        if value is not None:
            options[option] = value
    if body.seed is not None and body.seed < 0:  # llama-server: -1 is a random seed
        del options["seed"]
    if body.stop:
        options["stop"] = list(body.stop)
    return GenerateRequest(
        model=model, prompt=body.input_prefix, suffix=body.input_suffix, raw=True,
        options=options,
        infill=Infill(extra=[(f.filename, f.text) for f in body.input_extra],
                      prompt=body.prompt))


def stop_type(final: Chunk) -> str:
    """llama-server's ``stop_type``: "limit" when n_predict or the context ended the
    answer, else "eos" (the Runtime does not tell an end token from a stop string, so
    "word" is not reported)."""
    return "limit" if final.done_reason == "length" else "eos"


def _timings(final: Chunk) -> JSON:
    prompt_ms = final.prompt_eval_duration / 1e6
    predicted_ms = final.eval_duration / 1e6
    return {  # cache_n: prompt tokens reused from a KV cache (llama-server's name)
        "cache_n": max(0, final.prompt_tokens - final.prompt_eval_count),
        "prompt_n": final.prompt_eval_count, "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / final.prompt_eval_count
        if final.prompt_eval_count else 0.0,
        "prompt_per_second": final.prompt_eval_rate,
        "predicted_n": final.eval_count, "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / final.eval_count if final.eval_count else 0.0,
        "predicted_per_second": final.eval_rate,
    } | ({"draft_n": final.draft_n, "draft_n_accepted": final.draft_n_accepted}
         if final.draft_n else {})


def final_fields(model: str, final: Chunk, content: str) -> JSON:
    """The fields /completion's last answer has: the counts, why it stopped, timings."""
    return {
        "index": 0, "id_slot": 0, "stop": True, "model": model,
        "tokens_predicted": final.eval_count, "tokens_evaluated": final.prompt_tokens,
        "tokens_cached": max(0, final.prompt_tokens - final.prompt_eval_count),
        "truncated": bool(final.warnings), "stop_type": stop_type(final),
        "stopping_word": "", "has_new_line": "\n" in content, "timings": _timings(final),
    }


def completion(model: str, chunks: list[Chunk]) -> JSON:
    """The whole answer (``stream`` false): ``content`` and ``final_fields``."""
    content = "".join(c.text for c in chunks)
    return {"content": content, "tokens": [], **final_fields(model, chunks[-1], content)}


def stream_event(chunk: Chunk) -> JSON:
    """One streamed piece: ``{content, stop: false, index, id_slot, tokens}``."""
    return {"index": 0, "id_slot": 0, "content": chunk.text, "stop": False, "tokens": []}
