"""The Anthropic Messages API's requests: the bodies of ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` and their translation into the Runtime's
ChatRequest.  Pure: no HTTP (``server/anthropic_api.py`` does that); the answers'
side is ``api/anthropic_answers.py``.

Specs: https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/api/messages-count-tokens .

Pydantic checks types and the documented ranges (``max_tokens`` required and at
least 1, temperature 0..1), so a bad field is a 400 naming it.  Fields Anthropic has
and a local model cannot use (``metadata``, ``service_tier``, ``cache_control`` on a
block, citations) are ignored; what cannot be honoured faithfully (an image by URL,
documents, server tools such as web search) is a 400 that says so.

How a conversation maps onto the Runtime's messages:

* ``system`` (a string, or text blocks joined by blank lines) is a system message.
* A user message's ``tool_result`` blocks become ``tool`` messages (named after the
  ``tool_use`` they answer; content blocks joined; ``is_error`` prefixes "Error: "),
  then its text (and images) one user message.
* An assistant message's text is its content, its ``tool_use`` blocks its tool calls
  (ids kept), its ``thinking`` blocks its thinking; redacted thinking is dropped.
* Images travel as base64 (``Message.images``; an http(s) ``url`` source as its URL,
  fetched by the server): the Runtime refuses them with a 400 for a model without
  vision.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from locallama.api.common import UnicodeBody
from locallama.errors import InvalidRequest
from locallama.runtime.types import ChatRequest, Message, Think, Tool, ToolCall


class _Body(UnicodeBody):  # text that is not valid Unicode is refused (api/common.py)
    model_config = ConfigDict(extra="ignore")


# -- content blocks -----------------------------------------------------------------------


class TextBlock(_Body):
    type: Literal["text"]
    text: str


class ImageSource(_Body):
    type: Literal["base64", "url", "file"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(_Body):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(_Body):
    type: Literal["tool_use"]
    id: str
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(_Body):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Body):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Body):
    type: Literal["redacted_thinking"]
    data: str = ""


class OtherBlock(_Body):
    """A block type this server does not read (document, search_result, server tool
    results, …): refused with a 400 naming it, rather than silently dropped."""

    type: str


#: each block type read here, and the model that reads it
BLOCKS: dict[str, type[_Body]] = {
    "text": TextBlock, "image": ImageBlock, "tool_use": ToolUseBlock,
    "tool_result": ToolResultBlock, "thinking": ThinkingBlock,
    "redacted_thinking": RedactedThinkingBlock,
}


def _block_kind(value: Any) -> str:
    """The tag that picks a block's model: the model's name for a known ``type``, else
    OtherBlock (a class name as tag, so an error's location names no tag:
    ``server/http_errors.field_parts`` drops class names)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return BLOCKS[kind].__name__ if kind in BLOCKS else OtherBlock.__name__


Block = Annotated[
    Annotated[TextBlock, Tag("TextBlock")] | Annotated[ImageBlock, Tag("ImageBlock")]
    | Annotated[ToolUseBlock, Tag("ToolUseBlock")]
    | Annotated[ToolResultBlock, Tag("ToolResultBlock")]
    | Annotated[ThinkingBlock, Tag("ThinkingBlock")]
    | Annotated[RedactedThinkingBlock, Tag("RedactedThinkingBlock")]
    | Annotated[OtherBlock, Tag("OtherBlock")],
    Discriminator(_block_kind)]


class MessageParam(_Body):
    role: Literal["user", "assistant"]
    content: str | list[Block]


# -- tools, tool_choice, thinking -------------------------------------------------------------


class ToolParam(_Body):
    """A client tool: ``input_schema`` is a JSON schema of its input.  A server tool
    (``type`` such as "web_search_20250305") has no schema and is refused."""

    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingParam(_Body):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1)


# -- the bodies ------------------------------------------------------------------------------


class CountTokensRequest(_Body):
    """``POST /v1/messages/count_tokens``: what ``/v1/messages`` takes to build the
    prompt (no ``max_tokens``, sampling or ``stream``)."""

    model: str = Field(min_length=1)
    messages: list[MessageParam]
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingParam | None = None


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``; ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None  # user_id: nothing to do with it locally


# -- translation -----------------------------------------------------------------------------


def chat_request(body: CountTokensRequest) -> ChatRequest:
    """The Runtime's ChatRequest for a body: messages as the module docstring maps them,
    tools as function tools, ``tool_choice`` auto/any/tool/none as None/"required"/the
    name/"none", ``thinking`` enabled (or adaptive) as ``think`` True and disabled as
    False; for ``MessagesRequest`` also ``max_tokens`` as ``num_predict``,
    ``stop_sequences`` as ``stop``, temperature, top_p and top_k.

    Raises InvalidRequest (``param`` naming the field) for an empty conversation, a
    block type not read here, an image by URL or file, a server tool, a
    ``tool_choice`` naming no tool, and tool_choice "tool" without a name."""
    if not body.messages:
        raise InvalidRequest("messages: at least one message is required", "messages")
    messages = system_messages(body.system) + conversation(body.messages)
    options: dict[str, Any] = {}
    if isinstance(body, MessagesRequest):
        explicit = {"num_predict": body.max_tokens, "stop": body.stop_sequences,
                    "temperature": body.temperature, "top_p": body.top_p,
                    "top_k": body.top_k}
        options = {k: v for k, v in explicit.items() if v is not None}
    tools = [_tool(t, i) for i, t in enumerate(body.tools or ())] or None
    return ChatRequest(model=body.model, messages=messages, options=options, tools=tools,
                       think=_think(body.thinking),
                       tool_choice=_tool_choice(body.tool_choice, tools))


def system_messages(system: str | list[TextBlock] | None) -> list[Message]:
    """``system`` as a system message (text blocks joined by blank lines); none when
    absent or empty."""
    text = system if isinstance(system, str) or system is None else \
        "\n\n".join(b.text for b in system)
    return [Message("system", text)] if text else []


def conversation(messages: list[MessageParam]) -> list[Message]:
    """Anthropic's messages as the Runtime's (see the module docstring)."""
    names: dict[str, str] = {}  # tool_use id -> the tool's name
    result: list[Message] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}].content"
        blocks = [TextBlock(type="text", text=m.content)] if isinstance(m.content, str) \
            else m.content
        texts: list[str] = []
        images: list[str] = []
        message = Message(m.role)
        for k, block in enumerate(blocks):
            at = f"{where}[{k}]"
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ImageBlock):
                images.append(_image(block, at))
            elif isinstance(block, ToolUseBlock) and m.role == "assistant":
                message.tool_calls.append(ToolCall(block.name, block.input, block.id))
                names[block.id] = block.name
            elif isinstance(block, ToolResultBlock) and m.role == "user":
                result.append(_tool_result(block, names, at))
            elif isinstance(block, ThinkingBlock) and m.role == "assistant":
                message.thinking += block.thinking
            elif isinstance(block, RedactedThinkingBlock) and m.role == "assistant":
                continue  # encrypted reasoning of another model: nothing to show ours
            else:
                raise InvalidRequest(f"{at}: a {block.type!r} block is not supported in a "
                                     f"{m.role} message here", f"{at}.type")
        message.content = "\n\n".join(texts)
        message.images = images
        if message.content or message.images or message.tool_calls or message.thinking \
                or not any(isinstance(b, ToolResultBlock) for b in blocks):
            result.append(message)
    return result


def _tool_result(block: ToolResultBlock, names: dict[str, str], where: str) -> Message:
    content = block.content
    if content is None or isinstance(content, str):
        text, images = content or "", []
    else:
        text = "\n\n".join(b.text for b in content if isinstance(b, TextBlock))
        images = [_image(b, f"{where}.content[{j}]") for j, b in enumerate(content)
                  if isinstance(b, ImageBlock)]
    if block.is_error:
        text = f"Error: {text}"
    return Message("tool", text, images, tool_name=names.get(block.tool_use_id))


def _image(block: ImageBlock, where: str) -> str:
    """An image block's base64 data, or its http(s) URL (the server fetches it:
    ``server/image_urls.py``); an image by file id is refused."""
    source = block.source
    if source.type == "url" and (source.url or "").startswith(("http://", "https://")):
        return source.url
    if source.type != "base64" or not source.data:
        raise InvalidRequest(f"{where}: only base64 images and http(s) URLs are supported "
                             f"here (source type {source.type!r})", f"{where}.source")
    return source.data


def _tool(tool: ToolParam, index: int) -> Tool:
    if tool.type not in (None, "custom") or tool.input_schema is None:
        raise InvalidRequest(f"tools[{index}]: only client tools with an input_schema are "
                             f"supported here (got type {tool.type!r})", f"tools[{index}]")
    return Tool(tool.name, tool.description, tool.input_schema)


def _tool_choice(choice: ToolChoice | None, tools: list[Tool] | None) -> str | None:
    if choice is None or choice.type == "auto":
        return None
    if choice.type == "none":
        return "none"
    if choice.type == "any":
        return "required"
    if not choice.name:
        raise InvalidRequest("tool_choice.name: required when type is 'tool'",
                             "tool_choice.name")
    if not any(t.name == choice.name for t in tools or ()):
        raise InvalidRequest(f"tool_choice.name: {choice.name!r} is not in tools",
                             "tool_choice.name")
    return choice.name


def _think(thinking: ThinkingParam | None) -> Think:
    if thinking is None:
        return None
    return thinking.type != "disabled"
