"""The OpenAI API's requests: the bodies of /v1/chat/completions, /v1/completions and
/v1/embeddings as the OpenAI API reference documents them, and their translation
into the Runtime's requests.  Pure: no HTTP (``server/openai_api.py`` does that); the
answers' side is ``api/openai_objects.py``.

Pydantic checks types and the documented ranges (temperature 0..2, n >= 1, ...),
so a bad field is a 400 that names it.  Fields OpenAI has and locallama does not
use (user, metadata, logit_bias, ...) are ignored, as Ollama's OpenAI layer does.
``options`` is not OpenAI's: it carries Ollama options (num_ctx, top_k, ...) and
sits under the explicit OpenAI fields.

The functions at the end turn a body into the Runtime's requests (the face's
only translation step); they raise InvalidRequest with ``param`` naming the field.
Choices (``n``) and several prompts become one request each: the Runtime answers
one prompt at a time.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import ConfigDict, Field

from locallama.api.common import UnicodeBody, not_unicode_in
from locallama.errors import InvalidRequest
from locallama.runtime.types import ChatRequest, GenerateRequest, Message
from locallama.runtime.types import Tool as RuntimeTool
from locallama.runtime.types import ToolCall as RuntimeToolCall

TokenId = Annotated[int, Field(ge=0)]
Stop = str | list[str] | None
#: a prompt or an embedding input: text, texts, token ids, or lists of token ids
TextOrTokens = str | list[str] | list[TokenId] | list[list[TokenId]]


class _Body(UnicodeBody):  # text that is not valid Unicode is refused (api/common.py)
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool | None = False  # a last event with the usage and no choices


class ToolCallFunction(_Body):
    name: str
    arguments: str = "{}"  # a JSON object, as a string


class ToolCall(_Body):
    id: str | None = None
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None  # a string or content parts
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant messages
    tool_call_id: str | None = None  # tool messages
    reasoning_content: str | None = None  # an assistant turn's reasoning (llama-server, vLLM)


class FunctionDefinition(_Body):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"] = "function"
    function: NamedFunction


class JSONSchemaFormat(_Body):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class _Sampling(_Body):
    """The fields chat and completions share."""

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: Stop = None
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    n: int | None = Field(default=1, ge=1, le=128)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    options: dict[str, Any] | None = None  # Ollama options, under the fields above


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None


class CompletionRequest(_Sampling):
    prompt: TextOrTokens = ""
    suffix: str | None = None
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: int | None = Field(default=None, ge=0)  # None: 16, as in OpenAI


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1)
    input: TextOrTokens
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: int | None = Field(default=None, ge=1)
    options: dict[str, Any] | None = None


def include_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    """Whether a stream ends with a usage event (``stream_options.include_usage``)."""
    return bool(body.stream_options and body.stream_options.include_usage)


def sampling_options(body: _Sampling, num_predict: int | None) -> dict[str, Any]:
    """Ollama options for a request: ``options`` first, the explicit OpenAI fields over
    it (temperature, top_p, max_tokens as ``num_predict``, stop as a list, seed, the
    penalties); fields left out (None) do not override."""
    explicit = {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "num_predict": num_predict,
        "stop": [body.stop] if isinstance(body.stop, str) else body.stop,
        "seed": body.seed,
        "frequency_penalty": body.frequency_penalty,
        "presence_penalty": body.presence_penalty,
    }
    return {**(body.options or {}), **{k: v for k, v in explicit.items() if v is not None}}


def seeded(options: dict[str, Any], index: int) -> dict[str, Any]:
    """The options of choice ``index`` of n: a given seed becomes seed + index, so the
    choices differ and the whole answer stays reproducible."""
    seed = options.get("seed")
    if index == 0 or not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return options
    return {**options, "seed": seed + index}


def token_lists(value: TextOrTokens) -> list[str] | list[list[int]]:
    """A prompt or input as a list of items, each a text or a list of token ids:
    ``"a"`` -> ``["a"]``, ``[1, 2]`` -> ``[[1, 2]]``, lists of either as they are."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [list(value)]  # type: ignore[arg-type]
    return list(value)  # type: ignore[arg-type]


def invalid(message: str, param: str | None = None) -> InvalidRequest:
    """An InvalidRequest that names the field (``param`` in OpenAI's error body)."""
    return InvalidRequest(message, param)


class Run(NamedTuple):
    """One choice of a completions answer: which prompt, the prompt as sent, its request."""

    prompt_index: int  # the index in ``prompt`` (usage counts each prompt once)
    prompt: str | list[int]  # text, or token ids
    request: GenerateRequest


def completion_requests(body: CompletionRequest) -> list[Run]:
    """One raw GenerateRequest per prompt and choice (prompt-major: choice i of prompt p
    is run p * n + i, as OpenAI numbers them), with the prompt's index and itself.

    ``max_tokens`` defaults to 16 (OpenAI's) unless ``options.num_predict`` is set; a
    prompt of token ids is sent as ``context``, those ids as they are.  Raises
    InvalidRequest for an empty prompt list or an empty list of ids (``prompt[i]``)."""
    prompts = token_lists(body.prompt)
    if not prompts:
        raise invalid("prompt must not be empty", "prompt")
    limit = body.max_tokens
    if limit is None and "num_predict" not in (body.options or {}):
        limit = 16  # OpenAI's default for completions
    options = sampling_options(body, limit)
    runs = []
    for p, prompt in enumerate(prompts):
        if not isinstance(prompt, str) and not prompt:
            raise invalid("a prompt of token ids must not be empty", f"prompt[{p}]")
        for j in range(body.n or 1):
            runs.append(Run(p, prompt, GenerateRequest(
                model=body.model, raw=True, suffix=body.suffix or "",
                prompt=prompt if isinstance(prompt, str) else "",
                context=None if isinstance(prompt, str) else prompt,  # the ids, as they are
                options=seeded(options, j), logprobs=body.logprobs is not None,
                top_logprobs=body.logprobs or 0, echo=bool(body.echo),
            )))
    return runs


def chat_requests(body: ChatCompletionRequest) -> list[ChatRequest]:
    """One ChatRequest per choice (n), choice i seeded with seed + i (``seeded``).

    ``tool_choice`` "none" drops the tools, "auto" leaves the call to the model,
    "required" and a named function are the Runtime's ``tool_choice`` (a grammar makes
    the model call one, or that one); ``reasoning_effort`` is ``think``: "none" and
    "minimal" turn thinking off, low/medium/high are its levels
    (https://platform.openai.com/docs/api-reference/chat/create);
    ``max_completion_tokens`` wins over ``max_tokens``; ``response_format`` json_object
    is Ollama's "json" format and json_schema its schema.  Raises InvalidRequest for
    top_logprobs without logprobs, a tool_choice naming no tool in ``tools`` (or
    "required" / a name with no tools), a
    json_schema format without a schema, and what ``messages_for_runtime`` refuses."""
    if body.top_logprobs is not None and not body.logprobs:
        raise invalid("top_logprobs needs logprobs set to true", "top_logprobs")
    if not body.tools and body.tool_choice not in (None, "none", "auto"):
        raise invalid("'tool_choice' is only allowed when 'tools' are specified",
                      "tool_choice")
    tools, choice = None, None
    if body.tools and body.tool_choice != "none":
        tools = [RuntimeTool(t.function.name, t.function.description, t.function.parameters)
                 for t in body.tools]
        if isinstance(body.tool_choice, NamedToolChoice):
            choice = body.tool_choice.function.name
            if choice not in {t.name for t in tools}:
                raise invalid(f"tool_choice names {choice!r}, which is not in tools",
                              "tool_choice")
        elif body.tool_choice == "required":
            choice = "required"
    limit = body.max_completion_tokens if body.max_completion_tokens is not None \
        else body.max_tokens
    messages, options = messages_for_runtime(body.messages), sampling_options(body, limit)
    return [ChatRequest(
        model=body.model, messages=messages, options=seeded(options, i),
        format=_format(body.response_format), tools=tools, logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0, tool_choice=choice,
        think=_think(body.reasoning_effort),
    ) for i in range(body.n or 1)]


def _think(effort: str | None) -> bool | str | None:
    if effort is None:
        return None
    return False if effort in ("none", "minimal") else effort


def messages_for_runtime(messages: list[ChatMessage]) -> list[Message]:
    """OpenAI messages -> the Runtime's: developer is system, text parts are joined,
    image data URLs become images, tool-call arguments become objects, and a tool
    result gets the name of the call it answers."""
    names: dict[str, str] = {}  # tool_call_id -> function name
    result = []
    for i, m in enumerate(messages):
        content, images = _content(m.content, f"messages[{i}].content")
        message = Message("system" if m.role == "developer" else m.role, content, images)
        if m.tool_calls:
            for j, call in enumerate(m.tool_calls):
                where = f"messages[{i}].tool_calls[{j}].function.arguments"
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    raise invalid("tool call arguments must be a JSON object", where) from None
                if not isinstance(arguments, dict):
                    raise invalid("tool call arguments must be a JSON object", where)
                if reason := not_unicode_in(arguments, "arguments"):  # "\\ud800" in the text
                    raise invalid(reason, where)
                message.tool_calls.append(RuntimeToolCall(call.function.name, arguments,
                                                          call.id or ""))
                if call.id:
                    names[call.id] = call.function.name
        if m.role == "tool" and (name := names.get(m.tool_call_id or "") or m.name):
            message.tool_name = name
        if m.role == "assistant" and m.reasoning_content:
            message.thinking = m.reasoning_content
        result.append(message)
    return result


def embedding_inputs(body: EmbeddingRequest) -> list[str | list[int]]:
    """The items of an embeddings ``input``, each a text or a list of token ids (the
    caller detokenizes those).  Raises InvalidRequest for an empty input (``input``) or
    an empty list of ids (``input[i]``)."""
    items: list[str | list[int]] = list(token_lists(body.input))
    if not items:
        raise invalid("input must not be empty", "input")
    for i, item in enumerate(items):
        if not isinstance(item, str) and not item:
            raise invalid("a list of token ids must not be empty", f"input[{i}]")
    return items


def _content(content: str | list[dict[str, Any]] | None, where: str) -> tuple[str, list[str]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts, images = [], []
    for k, part in enumerate(content):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                images.append(url)  # fetched by the server (server/image_urls.py)
                continue
            if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
                raise invalid("images must be base64 data: URLs or http(s) URLs",
                              f"{where}[{k}].image_url")
            images.append(url.partition(",")[2])
        else:
            raise invalid(f"content part type {kind!r} is not supported: use text or "
                          "image_url", f"{where}[{k}].type")
    return "\n".join(texts), images


def _format(response_format: ResponseFormat | None) -> str | dict[str, Any] | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return "json"
    spec = response_format.json_schema
    if spec is None or spec.schema_ is None:
        raise invalid("a json_schema response_format needs json_schema.schema",
                      "response_format.json_schema")
    return spec.schema_
