"""The Runtime's vocabulary: the requests it takes and the records and chunks it gives.

This module sits at the bottom of the stack (it imports only ``units``), so
the engine, the store, the Runtime and every wire format can share it.  Wire formats
(``api/ollama.py``, the OpenAI face) translate to and from these types; none of their
dict shapes cross the Runtime boundary.

Units: durations in nanoseconds, counts in tokens, sizes in bytes, log-probabilities
in nats (natural log), as Ollama's API reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from locallama.units import format_parameter_count

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

KeepAlive = str | int | float | None
"""A duration ("5m", "1h30m", "300ms"), seconds as a number, 0 to unload at once,
negative to keep forever; None means the server default (LOCALLAMA_KEEP_ALIVE)."""

Format = str | dict[str, Any] | None
"""Structured output: "json" for any JSON value, or a JSON schema (a dict)."""

Think = bool | str | None
"""Reasoning wanted: True/False, or a level "low" / "medium" / "high"; None: as the
model does by default (Ollama's ``think``, OpenAI's ``reasoning_effort``)."""

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


# -- names and models --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelName:
    """A fully qualified model name, ``host/namespace/model:tag``; build one with
    ``store.names.parse_name``, which validates every part (a name becomes a path)."""

    host: str
    namespace: str
    model: str
    tag: str

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        """The shortest form, as ``ollama list`` prints it: defaults are left out."""
        prefix = ""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"

    @property
    def full(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """The path components of the manifest below ``manifests/``."""
        return (self.host, self.namespace, self.model, self.tag)

    def key(self) -> tuple[str, ...]:
        """Names compare without regard to case, as in Ollama."""
        return tuple(p.lower() for p in self.parts)


@dataclass
class Details:
    """A model's family and size at a glance (Ollama's ``ModelDetails``): what
    ``list``, ``ps`` and ``show`` print beside a name.

    ``parameter_size`` is Ollama's text ("268.10M"), ``quantization_level`` the file
    type ("Q4_K_M")."""

    format: str = "gguf"
    family: str = ""
    families: list[str] = field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""

    @classmethod
    def of(cls, architecture: str, parameter_count: int, file_type: str) -> Details:
        """From a GGUF header's facts: its architecture, parameters and file type."""
        return cls(family=architecture, families=[architecture] if architecture else [],
                   parameter_size=format_parameter_count(parameter_count),
                   quantization_level=file_type)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Details:
        """From a stored model's config blob (Ollama's ``model_family``, ``model_type``,
        ``file_type`` fields); an empty config (a broken model) gives empty details."""
        family = str(config.get("model_family") or "")
        families = config.get("model_families") or ([family] if family else [])
        return cls(format=str(config.get("model_format") or "gguf"), family=family,
                   families=[str(f) for f in families],
                   parameter_size=str(config.get("model_type") or ""),
                   quantization_level=str(config.get("file_type") or ""))


@dataclass
class ModelEntry:
    """One line of ``list``: a stored model."""

    name: ModelName
    digest: str  # "sha256:<hex>" of the manifest
    size: int  # bytes of every layer
    modified: datetime
    details: Details = field(default_factory=Details)
    #: why the model cannot be used (unreadable manifest, malformed digest, missing
    #: blob), or None; a broken model is still listed so that it can be removed
    broken: str | None = None

    @property
    def id(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


# -- messages and tools -------------------------------------------------------------------


@dataclass
class ToolCall:
    """A call a model made, or one an assistant message records: a function's name and
    its arguments (a JSON object). ``id`` ties a tool's result to its call (OpenAI's
    ``call_…``, Anthropic's ``toolu_…``; "" where the client sent none)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass
class ToolCallDelta:
    """A piece of a tool call as it forms in a stream (OpenAI's ``delta.tool_calls``,
    Anthropic's ``input_json_delta``, the Responses API's arguments deltas): the call's
    first delta has its ``id`` and ``name``, later ones fragments of the arguments' JSON
    text; joined in order, the fragments are the whole arguments object."""

    index: int  # which call of this answer: 0, 1, …
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Tool:
    """A function the model may call (the OpenAI/Ollama function tool): ``parameters`` is
    a JSON schema of the arguments."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None

    def function_json(self) -> dict[str, Any]:
        """``{"type": "function", "function": {name, description, parameters}}``: the
        object OpenAI's and Ollama's APIs take and chat templates read (unset fields
        left out)."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        if self.parameters is not None:
            function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass
class Message:
    """One turn of a conversation.

    ``images`` are base64 strings (refused for models without vision); ``tool_calls``
    belong to assistant messages; ``tool_name`` names the function a tool message
    answers."""

    role: str  # one of ROLES; LocalRuntime refuses others
    content: str = ""
    images: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_name: str | None = None
    thinking: str = ""  # an assistant turn's reasoning (Ollama's message.thinking)


# -- requests --------------------------------------------------------------------------


@dataclass
class Infill:
    """What llama-server's ``/infill`` adds to a fill-in-the-middle request beyond the
    prefix (``GenerateRequest.prompt``) and ``suffix``: other files as (filename, text)
    pairs (``input_extra``), the text after the prefix (``prompt``: the cursor's line
    so far), and llama-server's take limits on each part (``budget``)."""

    extra: list[tuple[str, str]] = field(default_factory=list)
    prompt: str = ""
    budget: bool = True


@dataclass
class GenerateRequest:
    """A completion: a prompt, formatted with the model's template unless ``raw``."""

    model: str
    prompt: str = ""
    system: str | None = None
    template: str | None = None
    suffix: str = ""
    raw: bool = False
    context: list[int] | None = None  # token ids to continue from (before the prompt)
    options: dict[str, Any] = field(default_factory=dict)  # Ollama's option names
    format: Format = None
    images: list[str] | None = None  # base64; refused for models without vision
    keep_alive: KeepAlive = None
    logprobs: bool = False  # log-probability of each generated token
    top_logprobs: int = 0  # and of this many alternatives at each step
    echo: bool = False  # also score the prompt's own tokens (Chunk.prompt_logprobs)
    truncate: bool = True  # False: a prompt longer than the context is an error
    shift: bool = True  # False: stop at the context's end instead of shifting it
    think: Think = None  # reasoning: True/False or "low"/"medium"/"high"; None: the model's way
    #: fill-in-the-middle as llama-server's /infill asks it (None: ``suffix`` alone)
    infill: Infill | None = None


@dataclass
class ChatRequest:
    """A conversation: messages with roles system/user/assistant/tool."""

    model: str
    messages: list[Message] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    format: Format = None
    tools: list[Tool] | None = None
    keep_alive: KeepAlive = None
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True  # False: a conversation longer than the context is an error
    shift: bool = True  # False: stop at the context's end instead of shifting it
    think: Think = None  # reasoning: True/False or "low"/"medium"/"high"; None: the model's way
    #: "auto" (None), "none", "required", or a function's name that must be called
    tool_choice: str | None = None


# -- answers ---------------------------------------------------------------------------


@dataclass
class TokenLogprob:
    """One token with its log-probability (nats) and, optionally, alternatives.

    ``logprob`` is nan where there is no value (a prompt's first token, which nothing
    precedes), -inf where the model gives the token no chance."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[TokenLogprob] = field(default_factory=list)


@dataclass
class Chunk:
    """One piece of a streamed answer; the last has ``done`` and the counts.

    Durations are in nanoseconds and counts in tokens, with Ollama's meanings:
    prompt_eval_* covers the prompt tokens evaluated (not those reused from a
    cache), eval_* the generated tokens.
    """

    text: str = ""
    done: bool = False
    done_reason: str | None = None  # "stop", "length" or "cancel"
    #: the stop string that ended the answer (a request's ``stop`` or the template's);
    #: None when the model ended it, a limit did, or it was cancelled (Anthropic's
    #: ``stop_sequence``)
    stop_sequence: str | None = None
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    load_duration: int = 0
    total_duration: int = 0
    context: list[int] | None = None
    logprobs: list[TokenLogprob] | None = None  # the tokens behind this chunk's text
    prompt_logprobs: list[TokenLogprob] | None = None  # with echo, on the first chunk;
    # the first prompt token has no logprob (nothing precedes it): logprob is nan
    tool_calls: list[ToolCall] | None = None  # on the final chunk
    thinking: str = ""  # reasoning text, streamed apart from ``text``
    tool_call_deltas: list[ToolCallDelta] | None = None  # tool calls as they form
    prompt_tokens: int = 0  # the whole prompt, cached or not (OpenAI usage)
    #: speculative decoding on the final chunk: tokens drafted and accepted by the model
    #: (llama-server's timings.draft_n / draft_n_accepted)
    draft_n: int = 0
    draft_n_accepted: int = 0
    warnings: list[str] = field(default_factory=list)  # e.g. "prompt truncated"

    @property
    def eval_rate(self) -> float:
        """Generated tokens per second."""
        return self.eval_count / (self.eval_duration / 1e9) if self.eval_duration else 0.0

    @property
    def prompt_eval_rate(self) -> float:
        """Prompt tokens evaluated per second."""
        if not self.prompt_eval_duration:
            return 0.0
        return self.prompt_eval_count / (self.prompt_eval_duration / 1e9)


@dataclass
class Score:
    """How likely a model finds a continuation after a context (log-likelihood scoring)."""

    logprob: float  # nats: the natural-log probability of the whole continuation
    greedy: bool  # every continuation token was the model's most likely next token
    token_logprobs: list[float]  # one per continuation token, nats

    @property
    def tokens(self) -> int:
        return len(self.token_logprobs)


@dataclass
class TokenizerInfo:
    """A model's tokenizer as harnesses ask for it (vLLM's ``GET /tokenizer_info``,
    the fields of a Hugging Face ``tokenizer_config.json``): the GGUF tokenizer's
    kind (``tokenizer.ggml.model``: "llama" for SentencePiece, "gpt2" for BPE, ...),
    the vocabulary's size, the context length the model was trained for, the special
    tokens' texts, whether a prompt gets BOS/EOS, and the chat template."""

    model: str
    tokenizer_model: str
    vocab_size: int
    context_length: int | None
    bos_token: str | None
    eos_token: str | None
    add_bos_token: bool
    add_eos_token: bool
    chat_template: str | None = None
    unk_token: str | None = None
    pad_token: str | None = None


@dataclass
class LoadedModelInfo:
    """One line of ``ps``."""

    name: str
    digest: str
    size: int  # bytes in memory (weights + KV cache + compute), estimated
    expires_at: datetime | None  # None: kept until stopped
    context_length: int  # tokens per sequence (num_ctx)
    details: Details = field(default_factory=Details)
    size_vram: int = 0  # bytes on a GPU (0: all in system memory)
    num_parallel: int = 0  # sequences the model was loaded with (0: not known)
    pid: int | None = None  # the runner process that holds it (None: in-process)
    rss: int | None = None  # bytes the runner has resident in memory, measured now
    replica: str | None = None  # serve --ray: the Ray Serve replica that holds it
    node: str | None = None  # serve --ray: the address of the node that replica runs on
    # prompt tokens of the requests it finished since it loaded: evaluated, reused from
    # a KV cache instead, and of those copied from another slot (None: not known)
    prompt_eval_count: int | None = None
    prompt_cached_count: int | None = None
    prompt_shared_count: int | None = None
    kv_cache_type: str | None = None  # f16, q8_0 or q4_0: its KV cache's element type
    flash_attention: bool | None = None  # loaded with flash attention (None: not known)
    repack: bool | None = None  # loaded with llama.cpp's repacked weight layouts


@dataclass
class Embeddings:
    embeddings: list[list[float]]  # one vector per input
    prompt_eval_count: int  # tokens embedded
    total_duration: int = 0
    load_duration: int = 0


@dataclass
class RerankResult:
    """One document's place in a reranking: its index in the request, its score (the
    reranker's raw classifier output: higher is more relevant) and its text."""

    index: int
    relevance_score: float
    document: str


@dataclass
class Reranking:
    """A reranking's answer: the results by score, best first (cut to ``top_n``), and
    the tokens evaluated for all the documents."""

    results: list[RerankResult]
    total_tokens: int
    total_duration: int = 0
    load_duration: int = 0


@dataclass
class ModelDetails:
    """What ``show`` reports about a model."""

    name: str
    digest: str
    size: int
    architecture: str
    parameter_count: int
    context_length: int | None
    embedding_length: int | None
    quantization: str
    template: str | None
    system: str | None
    parameters: dict[str, Any]  # Modelfile PARAMETERs, typed (stop: a list)
    messages: list[Message]  # Modelfile MESSAGEs
    licenses: list[str]
    modelfile: str
    model_info: dict[str, Any] = field(default_factory=dict)  # GGUF metadata
    modified_at: str = ""  # ISO 8601
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    projector_info: dict[str, Any] = field(default_factory=dict)  # a vision projector's GGUF

    @property
    def details(self) -> Details:
        """The at-a-glance details, as ``list`` and ``ps`` give them."""
        return Details.of(self.architecture, self.parameter_count, self.quantization)

