"""Will a model fit?  Memory needed versus memory had, and the speed to expect.

Pure arithmetic over :class:`~locallama.gguf_info.GGUFInfo` (no llama.cpp), so the
answer for a stored model is the loader's own estimate
(:func:`~locallama.gguf_info.estimate_memory`: weights + KV cache for num_ctx x
num_parallel + compute buffers) and the verdict compares it the way the loader
does: the total against the budget, with no extra margin, because a margin here
but not there would call a model "too large" that ``run`` then loads happily.

A model that is not on disk yet is described by a spec, ``SIZE:QUANT`` such as
``7b:q4_k_m``: the weights are ``parameters x bits per weight / 8`` and the KV
cache and compute buffers come from a typical model of that size (its layers,
heads and vocabulary), through the same estimate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest
from locallama.gguf_info import GGUFInfo, MemoryEstimate, estimate_memory
from locallama.kvcache import kv_cache_type as kv_cache_type_of
from locallama.options import Options, coerce_option
from locallama.units import parse_bytes

MIN_CTX = 512  # below this a chat does not get going; also llama.cpp's micro-batch
CTX_STEP = 256  # suggested contexts are multiples of this

FITS = "fits"
SMALLER_CONTEXT = "fits with a smaller context"
DOES_NOT_FIT = "does not fit"

# -- quantization types -----------------------------------------------------------

#: Bits per weight of a whole llama.cpp file of each type, embeddings and output
#: included (the mixes keep some tensors at higher precision, which is why Q4_K_M
#: is 4.89 and not 4.5).  From llama.cpp's tools/quantize/README.md, measured on
#: Llama-3.1-8B; Q3_K_M and the legacy Q4_0..Q5_1 are the sizes llama-quantize
#: prints for Llama-3-8B (8.03e9 weights), turned into bits per weight; the
#: ternary types are llama-quantize's own figures.
BITS_PER_WEIGHT: dict[str, float] = {
    "IQ1_S": 2.0042, "IQ1_M": 2.1460,
    "TQ1_0": 1.69, "TQ2_0": 2.06,
    "IQ2_XXS": 2.3824, "IQ2_XS": 2.5882, "IQ2_S": 2.7403, "IQ2_M": 2.9294,
    "IQ3_XXS": 3.2548, "IQ3_XS": 3.4977, "IQ3_S": 3.6606, "IQ3_M": 3.7628,
    "IQ4_XS": 4.4597, "IQ4_NL": 4.6818,
    "Q2_K_S": 2.9697, "Q2_K": 3.1593,
    "Q3_K_S": 3.6429, "Q3_K_M": 4.00, "Q3_K_L": 4.2979,
    "Q4_0": 4.64, "Q4_1": 5.11, "Q5_0": 5.57, "Q5_1": 6.04,
    "Q4_K_S": 4.6672, "Q4_K_M": 4.8944,
    "Q5_K_S": 5.5704, "Q5_K_M": 5.7036,
    "Q6_K": 6.5633, "Q8_0": 8.5008,
    "F16": 16.0005, "BF16": 16.0005, "F32": 32.0,
}
_QUANT_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M",
                  "FP16": "F16", "FP32": "F32"}


def quantization(name: str) -> tuple[str, float]:
    """A quantization type as llama.cpp spells it, with its bits per weight."""
    key = name.strip().upper().replace("-", "_")
    key = _QUANT_ALIASES.get(key, key)
    if key not in BITS_PER_WEIGHT:
        raise InvalidRequest(f"unknown quantization '{name}'; known: "
                             f"{', '.join(sorted(BITS_PER_WEIGHT))}")
    return key, BITS_PER_WEIGHT[key]


# -- typical model shapes ---------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """What the KV cache and compute buffers depend on, for one model size."""

    parameters: float
    layers: int
    embedding: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    like: str  # the model it is taken from


#: One current model per common size: grouped-query attention where the size is
#: a modern one; 13B is Llama 2's (full multi-head attention, a large KV cache).
SHAPES: tuple[Shape, ...] = (
    Shape(135e6, 30, 576, 9, 3, 64, 49152, "SmolLM2 135M"),
    Shape(270e6, 18, 640, 4, 1, 256, 262144, "Gemma 3 270M"),
    Shape(0.5e9, 24, 896, 14, 2, 64, 151936, "Qwen2.5 0.5B"),
    Shape(1e9, 16, 2048, 32, 8, 64, 128256, "Llama 3.2 1B"),
    Shape(1.5e9, 28, 1536, 12, 2, 128, 151936, "Qwen2.5 1.5B"),
    Shape(2e9, 26, 2304, 8, 4, 256, 256000, "Gemma 2 2B"),
    Shape(3e9, 28, 3072, 24, 8, 128, 128256, "Llama 3.2 3B"),
    Shape(4e9, 36, 2560, 32, 8, 128, 151936, "Qwen3 4B"),
    Shape(7e9, 32, 4096, 32, 8, 128, 32768, "Mistral 7B"),
    Shape(8e9, 32, 4096, 32, 8, 128, 128256, "Llama 3.1 8B"),
    Shape(9e9, 42, 3584, 16, 8, 256, 256000, "Gemma 2 9B"),
    Shape(12e9, 48, 3840, 16, 8, 256, 262144, "Gemma 3 12B"),
    Shape(13e9, 40, 5120, 40, 40, 128, 32000, "Llama 2 13B"),
    Shape(14e9, 48, 5120, 40, 8, 128, 152064, "Qwen2.5 14B"),
    Shape(27e9, 62, 5376, 32, 16, 128, 262144, "Gemma 3 27B"),
    Shape(32e9, 64, 5120, 40, 8, 128, 152064, "Qwen2.5 32B"),
    Shape(70e9, 80, 8192, 64, 8, 128, 128256, "Llama 3.1 70B"),
    Shape(405e9, 126, 16384, 128, 8, 128, 128256, "Llama 3.1 405B"),
)


def shape_for(parameters: float) -> tuple[Shape, bool]:
    """The typical shape for a size, and whether it is approximate.

    A size in the table (within 2%) is taken as is.  Between two sizes, layers
    and width are interpolated on a log scale and the heads, head size and
    vocabulary come from the nearer one; outside the table the end shape is
    scaled, layers and width each by the cube root of the ratio (parameters grow
    as layers x width^2).
    """
    for s in SHAPES:
        if abs(parameters / s.parameters - 1) <= 0.02:
            return s, False
    below = [s for s in SHAPES if s.parameters < parameters]
    above = [s for s in SHAPES if s.parameters > parameters]
    if below and above:
        lo, hi = below[-1], above[0]
        t = math.log(parameters / lo.parameters) / math.log(hi.parameters / lo.parameters)
        near = lo if t < 0.5 else hi
        layers = round(lo.layers + t * (hi.layers - lo.layers))
        width = lo.embedding * (hi.embedding / lo.embedding) ** t
        like = f"between {lo.like} and {hi.like}"
    else:
        near = below[-1] if below else above[0]
        scale = (parameters / near.parameters) ** (1 / 3)
        layers, width = round(near.layers * scale), near.embedding * scale
        like = f"{near.like}, scaled"
    embedding = max(near.head_dim, round(width / near.head_dim) * near.head_dim)
    heads = max(1, embedding // near.head_dim)
    return Shape(parameters, max(1, layers), embedding, heads, min(near.kv_heads, heads),
                 near.head_dim, near.vocab, like), True


# -- specs --------------------------------------------------------------------------

_SPEC = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[bm])", re.IGNORECASE)
_SPEC_LIKE = re.compile(r"\d+(?:\.\d+)?[bm]:\S+", re.IGNORECASE)
MAX_PARAMETERS = 10e12


def looks_like_spec(text: str) -> bool:
    """``NUMBER(b|m):QUANT``: the form that names a size rather than a model."""
    return bool(_SPEC_LIKE.fullmatch(text.strip()))


@dataclass(frozen=True)
class Spec:
    """A model that is not on disk: a size and a quantization type."""

    text: str  # normalized: "7b:q4_k_m"
    parameters: int
    quantization: str  # as llama.cpp spells it: "Q4_K_M"
    bits_per_weight: float
    shape: Shape
    approximate: bool  # the size is not in the shape table

    @property
    def weights(self) -> int:
        return int(self.parameters * self.bits_per_weight / 8)

    def info(self) -> GGUFInfo:
        """A stand-in header, so a spec goes through the loader's very estimate."""
        s = self.shape
        return GGUFInfo(
            path=Path(self.text), file_size=self.weights, architecture="estimate",
            name=self.text, parameter_count=self.parameters, file_type=self.quantization,
            context_length=None, embedding_length=s.embedding, block_count=s.layers,
            head_count=s.heads, head_count_kv=s.kv_heads, key_length=s.head_dim,
            value_length=s.head_dim, chat_template=None, tensor_bytes=self.weights,
            metadata={}, vocab_size=s.vocab)


def parse_spec(text: str) -> Spec:
    """Parse ``7b:q4_k_m``, ``0.5b:f16``, ``270m:q8_0``; InvalidRequest when malformed."""
    size, sep, quant = text.strip().partition(":")
    match = _SPEC.fullmatch(size)
    if not sep or not quant or match is None:
        raise InvalidRequest(f"'{text}' is not a size and quantization like 7b:q4_k_m "
                             "or 270m:q8_0")
    scale = 1e9 if match["unit"].lower() == "b" else 1e6
    parameters = float(match["number"]) * scale
    if not 1e6 <= parameters <= MAX_PARAMETERS:
        raise InvalidRequest(f"model size '{size}' is out of range (1m to 10000b)")
    qname, bpw = quantization(quant)
    shape, approximate = shape_for(parameters)
    return Spec(f"{size.lower()}:{quant.lower()}", int(parameters), qname, bpw, shape,
                approximate)


# -- sizes ----------------------------------------------------------------------------

def parse_size(text: str) -> int:
    """A memory budget in bytes from "8GB", "8 GiB", "512MB", "1.5T" or a plain number
    (:func:`~locallama.units.parse_bytes`); InvalidRequest unless it is positive."""
    try:
        value = parse_bytes(text)
    except ValueError:
        raise InvalidRequest(f"memory size must look like 8GB, 16 GiB or 512MB, not '{text}'"
                             ) from None
    if value <= 0:
        raise InvalidRequest(f"memory size must be positive, not '{text}'")
    return value


# -- verdicts -------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """A model against one memory budget at one context size."""

    verdict: str  # FITS, SMALLER_CONTEXT or DOES_NOT_FIT
    num_ctx: int  # the context asked for
    num_parallel: int
    estimate: MemoryEstimate  # at num_ctx
    budget: int
    max_num_ctx: int | None  # the largest context that fits; num_ctx when it fits

    def describe(self) -> str:
        """For a table cell: "fits", "fits at num_ctx 3328", "does not fit"."""
        if self.verdict == SMALLER_CONTEXT:
            return f"fits at num_ctx {self.max_num_ctx}"
        return self.verdict


def assess(info: GGUFInfo, num_ctx: int, budget: int, num_parallel: int = 1,
           kv_bytes: float = 2.0) -> Fit:
    """The verdict for a model at num_ctx x num_parallel against ``budget`` bytes, its KV
    cache at ``kv_bytes`` per element (kvcache.KV_CACHE_TYPES: f16 2, q8_0 34/32)."""
    if num_ctx < 1 or num_parallel < 1:
        raise InvalidRequest("num_ctx and num_parallel must be at least 1")
    estimate = estimate_memory(info, num_ctx, num_parallel, kv_bytes)
    best = max_context(info, num_ctx, budget, num_parallel, kv_bytes)
    if best == num_ctx:
        verdict = FITS
    elif best is None:
        verdict = DOES_NOT_FIT
    else:
        verdict = SMALLER_CONTEXT
    return Fit(verdict, num_ctx, num_parallel, estimate, budget, best)


def max_context(info: GGUFInfo, num_ctx: int, budget: int, num_parallel: int = 1,
                kv_bytes: float = 2.0) -> int | None:
    """The largest context up to num_ctx whose total fits in ``budget``.

    num_ctx itself when it fits; else the largest multiple of CTX_STEP from
    MIN_CTX up that fits; None when not even MIN_CTX does.  The total only grows
    with the context (KV linearly, compute piecewise linearly), so a binary
    search over the steps finds it exactly.
    """
    def fits(ctx: int) -> bool:
        return estimate_memory(info, ctx, num_parallel, kv_bytes).total <= budget

    if fits(num_ctx):
        return num_ctx
    lo, hi = MIN_CTX // CTX_STEP, (num_ctx - 1) // CTX_STEP
    if hi < lo or not fits(lo * CTX_STEP):
        return None
    while lo < hi:  # invariant: lo fits
        mid = (lo + hi + 1) // 2
        if fits(mid * CTX_STEP):
            lo = mid
        else:
            hi = mid - 1
    return lo * CTX_STEP


def tokens_per_second(estimate: MemoryEstimate, bandwidth: float, num_parallel: int = 1
                      ) -> float:
    """An upper bound on generation speed for one sequence: bandwidth / bytes per token.

    Generating a token multiplies every weight once (a matrix-vector product per
    layer) and attends over the sequence's whole KV cache, so each token streams
    the weights plus one sequence's KV cache from memory; on a CPU that, not
    arithmetic, is the limit.  Real speed is lower (compute, imperfect use of the
    bandwidth, other sequences sharing it), and a little higher while the
    context is still short, since the KV cache is counted full.  A mixture-of-
    experts model reads only its active experts, so for one this is pessimistic.
    """
    per_token = estimate.weights + estimate.kv_cache / num_parallel
    return bandwidth / per_token if per_token > 0 and bandwidth > 0 else 0.0


def context_for(info: GGUFInfo, params: dict[str, Any] | None = None,
                requested: int | None = None) -> int:
    """The num_ctx a run would use: asked for, else the Modelfile's, else Ollama's
    default; never beyond what the model was trained for (as the loader caps it)."""
    num_ctx = requested
    if num_ctx is None and params and params.get("num_ctx") is not None:
        try:
            num_ctx = coerce_option("num_ctx", params["num_ctx"])
        except InvalidRequest:
            num_ctx = None
    if num_ctx is None or num_ctx < 1:
        num_ctx = Options().num_ctx
    if info.context_length:
        num_ctx = min(num_ctx, info.context_length)
    return num_ctx


# -- one row of the report ---------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """One model's needs, verdicts and speed: a row of ``locallama fit``."""

    model: str
    kind: str  # "model" (in the store) or "estimate" (a SIZE:QUANT spec)
    quantization: str
    parameters: int
    fit: Fit  # against RAM (or the stated size)
    gpu: Fit | None  # against free GPU memory, where there is a GPU
    tokens_per_second: float | None  # at the largest context that fits; None: no fit
    approximate: bool = False
    like: str | None = None  # for a spec: the model whose shape it borrows
    kv_cache_type: str = "f16"

    def to_dict(self) -> dict[str, Any]:
        e = self.fit.estimate
        data: dict[str, Any] = {
            "model": self.model, "kind": self.kind, "quantization": self.quantization,
            "parameters": self.parameters, "num_ctx": self.fit.num_ctx,
            "num_parallel": self.fit.num_parallel, "weights": e.weights,
            "kv_cache": e.kv_cache, "compute": e.compute, "total": e.total,
            "budget": self.fit.budget, "verdict": self.fit.verdict,
            "max_num_ctx": self.fit.max_num_ctx,
            "tokens_per_second": None if self.tokens_per_second is None
            else round(self.tokens_per_second, 2),
            "approximate": self.approximate, "kv_cache_type": self.kv_cache_type,
        }
        if self.like:
            data["shape_like"] = self.like
        if self.gpu is not None:
            data["gpu"] = {"budget": self.gpu.budget, "verdict": self.gpu.verdict,
                           "max_num_ctx": self.gpu.max_num_ctx}
        return data


def report(model: str, info: GGUFInfo, *, num_ctx: int, budget: int, bandwidth: float,
           num_parallel: int = 1, gpu_budget: int | None = None, kind: str = "model",
           approximate: bool = False, like: str | None = None,
           kv_cache_type: str = "f16") -> Report:
    """Assess one model against RAM (and the GPU) and estimate its speed, its KV cache
    of ``kv_cache_type`` (f16, q8_0, q4_0; InvalidRequest for another name)."""
    kv_bytes = kv_cache_type_of(kv_cache_type).bytes_per_element
    fit = assess(info, num_ctx, budget, num_parallel, kv_bytes)
    gpu = (assess(info, num_ctx, gpu_budget, num_parallel, kv_bytes)
           if gpu_budget is not None else None)
    speed = None
    if fit.max_num_ctx is not None:
        at = fit.estimate if fit.verdict == FITS else estimate_memory(
            info, fit.max_num_ctx, num_parallel, kv_bytes)
        speed = tokens_per_second(at, bandwidth, num_parallel)
    return Report(model, kind, info.file_type, info.parameter_count, fit, gpu, speed,
                  approximate, like, kv_cache_type_of(kv_cache_type).name)


def report_spec(spec: Spec, **kwargs: Any) -> Report:
    """:func:`report` for a SIZE:QUANT spec, at the context given in ``kwargs``."""
    return report(spec.text, spec.info(), kind="estimate", approximate=spec.approximate,
                  like=spec.shape.like, **kwargs)
