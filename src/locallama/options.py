"""Generation options with Ollama's names, types and defaults.

Options arrive as strings from Modelfile PARAMETER lines and as JSON from API
requests; both are coerced here, once.  Precedence is request > model
parameters > defaults, and :func:`resolve_options` is the only place that
merges them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from locallama.errors import InvalidRequest
from locallama.kvcache import kv_cache_type


@dataclass(frozen=True)
class Options:
    """Every knob of one generation, defaults as in Ollama."""

    num_ctx: int = 4096
    num_predict: int = -1  # -1: until the context is full or the model stops
    num_keep: int = 4
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1  # -1: a fresh random seed per request
    stop: tuple[str, ...] = field(default_factory=tuple)
    num_thread: int = 0  # 0: choose from the machine's physical cores
    num_batch: int = 512
    num_gpu: int = -1  # -1: as many layers as fit
    main_gpu: int = 0
    use_mmap: bool = True
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    # llama.cpp's --cache-type-k/-v for both: f16, q8_0, q4_0; "": LOCALLAMA_KV_CACHE_TYPE
    kv_cache_type: str = ""
    # Speculative decoding (engine/speculative.py), llama.cpp's names: the most tokens
    # drafted per step (-1: the scheduler's choice, on where it keeps greedy output
    # exact; 0: off; --spec-draft-n-max, /completion's speculative.n_max;
    # ``draft_num_predict`` is an alias), the fewest worth checking (speculative.n_min)
    # and the n-gram prompt lookup matches (speculative.ngram_size_n)
    draft_max: int = -1
    draft_min: int = 1
    spec_ngram_size_n: int = 3

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stop"] = list(self.stop)
        return data

    @property
    def threads(self) -> int:
        """Threads for llama.cpp: num_thread, or the physical core count."""
        if self.num_thread > 0:
            return self.num_thread
        try:
            import psutil

            cores = psutil.cpu_count(logical=False)
        except Exception:  # psutil can fail in odd containers; fall back below
            cores = None
        return max(1, cores or os.cpu_count() or 1)


_FIELDS = {f.name: f for f in dataclasses.fields(Options)}
_TYPES = {
    name: (tuple if name == "stop" else type(getattr(Options(), name))) for name in _FIELDS
}
OPTION_NAMES = tuple(_FIELDS)
#: other names of options (llama.cpp's and Ollama-style spellings)
OPTION_ALIASES = {"draft_num_predict": "draft_max"}
#: Modelfile parameters that are about the model, not one generation: kept as strings
#: in the manifest's params, never an option (``draft_model``: the draft model's name)
MODEL_PARAMETERS = ("draft_model",)

#: the most threads ``num_thread`` may ask for: ggml's GGML_MAX_N_THREADS, the size of
#: its CPU backend's thread tables (ggml.h).  Past it the OpenMP runtime may fail to
#: create the threads and abort the whole process (100000 did).
MAX_THREADS = 512
#: the most tokens one speculative step may draft (a step's batch is draft + 1 tokens)
MAX_DRAFT = 64


def coerce_option(name: str, value: Any) -> Any:
    """Turn a JSON or Modelfile value into the option's type, or raise InvalidRequest
    naming the option: a whole number for int options (5.0 is 5), a finite number for
    float ones (NaN and infinity, which Python's JSON reads and ``float`` parses, are
    refused), true/false for bools, a string or list of strings for ``stop``."""
    kind = _TYPES.get(OPTION_ALIASES.get(name, name))
    if kind is None:
        raise InvalidRequest(f"unknown option {name!r}")
    try:
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            if name == "kv_cache_type" and value.strip():
                return kv_cache_type(value, f"option {name!r}").name
            return value.strip()
        if kind is tuple:
            if isinstance(value, str):
                return (value,)
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise TypeError
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise TypeError
        if kind is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float):
                if not value.is_integer():
                    raise TypeError
                return int(value)
            return int(value)
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not math.isfinite(number):  # "nan", "inf", JSON's NaN and Infinity
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"option {name!r} must be {_describe(kind)}, not {value!r}"
        ) from None


def parse_parameters(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Type the PARAMETER lines of a Modelfile; ``stop`` may repeat and accumulates."""
    params: dict[str, Any] = {}
    for name, raw in pairs:
        if name in MODEL_PARAMETERS:
            params[name] = raw
            continue
        value = coerce_option(name, raw)
        if name == "stop":
            params["stop"] = [*params.get("stop", []), *value]
        else:
            params[name] = value
    return params


def resolve_options(*layers: Mapping[str, Any] | None, strict: bool = False) -> Options:
    """Merge option layers, later ones winning, over the defaults.

    With ``strict`` an unknown name is an error; otherwise it is ignored, as
    Ollama's API does.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            if name in MODEL_PARAMETERS:
                continue
            name = OPTION_ALIASES.get(name, name)
            if name not in _TYPES:
                if strict:
                    raise InvalidRequest(f"unknown option {name!r}")
                continue
            if value is None:
                continue
            merged[name] = coerce_option(name, value)
    options = Options(**merged)
    _check_ranges(options)
    return options


def _check_ranges(o: Options) -> None:
    problems = []
    if o.num_ctx < 1:
        problems.append("num_ctx must be at least 1")
    if o.num_predict < -2:
        problems.append("num_predict must be -1 (no limit), -2 (fill context) or >= 0")
    if o.temperature < 0:
        problems.append("temperature must not be negative")
    if o.top_k < 0:
        problems.append("top_k must not be negative")
    if not 0.0 <= o.top_p <= 1.0:
        problems.append("top_p must be between 0 and 1")
    if not 0.0 <= o.min_p <= 1.0:
        problems.append("min_p must be between 0 and 1")
    if o.num_batch < 1:
        problems.append("num_batch must be at least 1")
    if o.repeat_last_n < -1:
        problems.append("repeat_last_n must be -1 (num_ctx), 0 (off) or positive")
    if o.num_thread > MAX_THREADS:
        problems.append(f"num_thread must be at most {MAX_THREADS} (0: the physical cores)")
    if o.mirostat not in (0, 1, 2):
        problems.append("mirostat must be 0, 1 or 2")
    if not -1 <= o.draft_max <= MAX_DRAFT:
        problems.append(f"draft_max must be -1 (automatic), 0 (no speculative decoding) "
                        f"or at most {MAX_DRAFT}")
    if o.draft_min < 0:
        problems.append("draft_min must not be negative")
    if not 1 <= o.spec_ngram_size_n <= 64:
        problems.append("spec_ngram_size_n must be between 1 and 64")
    if problems:
        raise InvalidRequest("; ".join(problems))


def _describe(kind: type) -> str:
    return {
        int: "a whole number",
        float: "a finite number",
        bool: "true or false",
        tuple: "a string or a list of strings",
        str: "a string",
    }[kind]


#: the longest keep_alive in seconds: Go's largest time.Duration (2^63 - 1 ns,
#: 2562047h47m16.854775807s, about 292 years).  Ollama's parser refuses a longer duration
#: string ("invalid duration"); refusing longer numbers too keeps every expiry a time
#: that ``datetime`` and the platform's time_t can hold, so ps can always show it.
MAX_KEEP_ALIVE_S = (2**63 - 1) / 1e9

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def parse_keep_alive(value: str | int | float | None, default: str = "5m") -> float | None:
    """Seconds to keep a model loaded after a request; None means forever.

    Accepts Go-style durations ("5m", "1h30m", "300ms", "-1m"), plain numbers of
    seconds (as Ollama does), 0 to unload at once, and any negative to keep it.
    Raises InvalidRequest for anything else, NaN, and a duration longer than
    ``MAX_KEEP_ALIVE_S`` (about 292 years, the longest Ollama's Go parser can hold).
    """
    if value is None or value == "":
        value = default
    if isinstance(value, bool):
        raise InvalidRequest(f"invalid keep_alive {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _DURATION.findall(body)
            if not parts or "".join(n + u for n, u in parts) != body:
                raise InvalidRequest(
                    f"invalid keep_alive {value!r}: use a duration like 5m, 1h or 30s, "
                    "a number of seconds, 0 or -1") from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if math.isnan(seconds):
        raise InvalidRequest(f"invalid keep_alive {value!r}: not a number")
    if seconds < 0:
        return None
    if seconds > MAX_KEEP_ALIVE_S:
        raise InvalidRequest(
            f"keep_alive {value!r} is longer than the longest duration, 2562047h47m16s "
            "(about 292 years); use -1 to keep the model loaded until it is stopped")
    return seconds
