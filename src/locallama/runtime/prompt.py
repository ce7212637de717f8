"""Prompt assembly: a generate or chat request and a loaded model in, tokens and stops out.

Two steps per request, so that a bad request is refused before a model loads:
``check_generate`` / ``chat_messages`` look at the request and the stored record
only; ``generate_prompt`` / ``chat_prompt`` run once the model is loaded, pick its
template, render it (in the renderer's worker processes) and tokenize. The rules
follow Ollama's docs/api.md: ``system`` overrides the Modelfile's SYSTEM, ``raw``
skips the template, ``context`` carries a previous answer's token ids.  A ``suffix``
(or llama-server's /infill) makes a fill-in-the-middle prompt instead, laid out around
the model's FIM tokens by ``engine/fim.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from locallama.engine.fim import Budget, layout
from locallama.engine.reasoning import (
    LEVELS,
    ReasoningFormat,
    reasoning_format,
    starts_inside,
    template_switches,
)
from locallama.engine.templates import FallbackTemplate, Template, select_template
from locallama.engine.tool_grammar import tool_choice_grammar
from locallama.engine.tool_stream import CLOSE, MISTRAL, OPEN
from locallama.engine.tools import template_supports_tools
from locallama.engine.vision_types import MARKER, ImageSpan, decode_images, spans_with_data
from locallama.errors import InvalidRequest
from locallama.runtime.records import stored_messages
from locallama.runtime.types import ROLES, GenerateRequest, Message, Think, Tool
from locallama.store import ModelRecord

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel
    from locallama.engine.render import Renderer


@dataclass(frozen=True)
class Prompt:
    """What the scheduler evaluates for one request.

    ``tokens``: the prompt's token ids (BOS included where the model adds one, none
    added after a ``context``); ``stops``: stop strings the template's format implies
    (the request's own ``stop`` option is added by the caller); ``reasoning``: the
    thinking convention to split the output by (None: no split), ``inside``: the
    prompt left the thinking open; ``special``: special tokens whose text the output
    must spell (the markers of the reasoning and tool-call formats)."""

    tokens: list[int]
    stops: tuple[str, ...] = ()
    reasoning: ReasoningFormat | None = None
    inside: bool = False
    special: frozenset[int] = frozenset()
    grammar: str | None = None  # tool_choice's grammar, over the request's format
    images: tuple[ImageSpan, ...] = ()  # where ``tokens`` holds images (placeholder ids)


def template_for(record: ModelRecord, model: LoadedModel,
                 override: str | None = None) -> Template:
    """The template a request renders with: ``override`` (a request's ``template``), else
    the Modelfile's TEMPLATE, else the GGUF's chat template, else the plain fallback.
    Raises TemplateError for a Go template outside the supported subset."""
    return select_template(override or record.template, model.info.chat_template,
                           model.bos_text, model.eos_text)


# -- generate ------------------------------------------------------------------


def check_generate(record: ModelRecord, request: GenerateRequest) -> None:
    """Refuse what a generate request asks for that this runtime cannot do, before any
    model loads: InvalidRequest for images on a model without vision (no projector
    layer), for an image that is not base64, or for text that is not valid Unicode.  (Whether the
    model can fill in the middle is known once it is loaded: ``fim_prompt``.)"""
    _check_images(record, request.images)
    for field in ("prompt", "system", "template", "suffix"):
        _check_unicode(getattr(request, field), field)
    if request.infill is not None:
        _check_unicode(request.infill.prompt, "prompt")
        for i, (filename, text) in enumerate(request.infill.extra):
            _check_unicode(filename, f"input_extra[{i}].filename")
            _check_unicode(text, f"input_extra[{i}].text")


def generate_prompt(record: ModelRecord, request: GenerateRequest, model: LoadedModel,
                    renderer: Renderer) -> Prompt:
    """The prompt of a generate request (Ollama's /api/generate).

    ``raw``: the prompt as written, no template. Otherwise the system is the
    request's ``system`` when given (even empty), else the Modelfile's SYSTEM; a
    model without a chat template (the fallback) completes text, so it gets
    ``"{system}\\n\\n{prompt}"`` (or the prompt alone), and a model with one gets the
    template rendered over [system, user] with the template's stops. With
    ``context`` its ids come first and the text is tokenized without BOS. Raises
    what rendering raises (TemplateError, TemplateLimitExceeded, Cancelled).  With a
    ``suffix`` or ``infill`` the prompt is ``fim_prompt``'s."""
    if request.suffix or request.infill is not None:
        return fim_prompt(record, request, model)
    stops: tuple[str, ...] = ()
    fmt = None
    images = decode_images(request.images)
    user = _with_markers(request.prompt, len(images)) if images else request.prompt
    if request.raw:  # the caller wrote the template's text: its convention still holds
        text = user
        fmt = _thinking_format(record, template_for(record, model, request.template),
                               request.think)
    else:
        template = template_for(record, model, request.template)
        fmt = _thinking_format(record, template, request.think)
        system = request.system if request.system is not None else record.system
        if isinstance(template, FallbackTemplate):
            # A base model completes text: the prompt goes in as written.
            text = f"{system}\n\n{user}" if system else user
        else:
            messages = [Message("system", _unmarked(system, images))] if system else []
            messages.append(Message("user", user))
            rendered = template.render(_template_messages(messages), renderer=renderer,
                                       model=record.name.display,
                                       variables=template_switches(request.think))
            text, stops = rendered.prompt, rendered.stops
    if images:
        context = list(request.context or [])
        tokens, found = model.tokenize_images(text, images, add_bos=not context)
        prompt = _prompt(model, context + tokens, stops, fmt, text, request.think, tools=False)
        return replace(prompt, images=spans_with_data(found, images, len(context)))
    if request.context:
        tokens = list(request.context) + model.tokenize(text, add_bos=False)
    else:
        tokens = model.tokenize(text)  # raw prompts may spell special tokens too
    return _prompt(model, tokens, stops, fmt, text, request.think, tools=False)


def fim_prompt(record: ModelRecord, request: GenerateRequest, model: LoadedModel) -> Prompt:
    """A fill-in-the-middle prompt: ``prompt`` is the text before the gap, ``suffix``
    the text after it, laid out as llama-server's /infill does (``engine/fim.py``),
    BOS first where the model adds one, no template, system or stops of a template.
    ``context`` ids go first (then no BOS).  With ``infill`` (the /infill route) its
    extra files and prompt join, under llama-server's take limits.  InvalidRequest
    naming the model when its vocabulary has no FIM prefix, suffix or middle token
    (Ollama's "does not support insert")."""
    fim = model.fim
    if not fim.usable:
        raise InvalidRequest(
            f"model '{record.name.display}' does not support insert (fill-in-the-middle): "
            f"its vocabulary has no FIM {', '.join(fim.missing())} token")
    infill = request.infill
    budget = None
    if infill is not None and infill.budget:
        budget = Budget(model.params.num_batch, model.params.num_ctx,
                        int(request.options.get("num_predict", -1)))
    tokens = layout(
        fim, lambda text: model.tokenize(text, add_bos=False, special=False),
        request.prompt, request.suffix,
        prompt=infill.prompt if infill else "", extra=infill.extra if infill else (),
        bos=None if request.context else model.bos_id, budget=budget,
        tokenize_prompt=lambda text: model.tokenize(text, add_bos=False, special=True))
    return Prompt(list(request.context or []) + tokens)


# -- chat ----------------------------------------------------------------------


def chat_messages(record: ModelRecord, messages: list[Message]) -> list[Message]:
    """The conversation a chat template sees, checked before any model loads.

    Every message must be a :class:`Message` with a role of system, user, assistant
    or tool and string content (InvalidRequest otherwise, for the first bad one);
    then images are refused as ``check_generate`` refuses them. The Modelfile's
    MESSAGEs come first, and its SYSTEM before them unless the conversation has a
    system message of its own."""
    checked = [_check_message(m) for m in messages]
    for message in checked:
        _check_images(record, message.images)
    preamble = stored_messages(record)
    if record.system and not any(m.role == "system" for m in checked):
        preamble.insert(0, Message("system", record.system))
    return preamble + checked


def chat_prompt(record: ModelRecord, conversation: list[Message], tools: list[Tool] | None,
                model: LoadedModel, renderer: Renderer, think: Think = None,
                tool_choice: str | None = None) -> Prompt:
    """The prompt of a chat request (Ollama's /api/chat, OpenAI's chat completions):
    the model's template rendered over ``conversation`` (from ``chat_messages``) with
    a generation prompt, ``tools`` as OpenAI function-tool objects and ``think`` as the
    template's switches (``enable_thinking``, ``reasoning_effort``), tokenized with
    BOS; ``tool_choice`` "required" or a name: a grammar forces a call in the
    template's call format (``tool_grammar.py``). InvalidRequest when tools are given
    and the template does not read them, or thinking is asked of a model whose
    template declares none; otherwise raises what rendering raises."""
    template = template_for(record, model)
    if tools and not template_supports_tools(template.source):
        raise InvalidRequest(f"model '{record.name.display}' does not support tools")
    fmt = _thinking_format(record, template, think)
    images = [data for m in conversation for data in decode_images(m.images)]
    if images:  # each message's images are marked before its text
        conversation = [replace(m, content=_with_markers(m.content, len(m.images))
                                if m.images else _unmarked(m.content, images))
                        for m in conversation]
    rendered = template.render(_template_messages(conversation), tools=_template_tools(tools),
                               renderer=renderer, model=record.name.display,
                               variables=template_switches(think))
    if images:
        tokens, found = model.tokenize_images(rendered.prompt, images)
        prompt = _prompt(model, tokens, rendered.stops, fmt, rendered.prompt, think,
                         tools=bool(tools))
        prompt = replace(prompt, images=spans_with_data(found, images))
    else:
        prompt = _prompt(model, model.tokenize(rendered.prompt), rendered.stops, fmt,
                         rendered.prompt, think, tools=bool(tools))
    if tools and tool_choice:
        grammar = tool_choice_grammar(tools, tool_choice, template.source)
        prompt = replace(prompt, grammar=grammar)
    return prompt


# -- reasoning and markers -------------------------------------------------------


def _check_think(record: ModelRecord, fmt: ReasoningFormat | None, think: Think) -> None:
    """InvalidRequest for a ``think`` that is not a bool or a level, or that asks a
    model without a thinking convention to think (as Ollama answers it)."""
    if isinstance(think, str) and think not in LEVELS:
        raise InvalidRequest(f"think must be true, false, or one of {', '.join(LEVELS)}, "
                             f"not {think!r}", "think")
    if think not in (None, False) and fmt is None:
        raise InvalidRequest(f"model '{record.name.display}' does not support thinking",
                             "think")


def _thinking_format(record: ModelRecord, template: Template, think: Think
                     ) -> ReasoningFormat | None:
    fmt = None if isinstance(template, FallbackTemplate) else reasoning_format(template.source)
    _check_think(record, fmt, think)
    return fmt


def _prompt(model: LoadedModel, tokens: list[int], stops: tuple[str, ...],
            fmt: ReasoningFormat | None, text: str, think: Think, tools: bool) -> Prompt:
    """The Prompt with its split: the reasoning format applies unless thinking is off
    and the prompt did not open it (the model did not think: nothing is taken out);
    harmony's channels are always read."""
    inside = fmt is not None and starts_inside(fmt, text)
    if fmt is not None and think is False and fmt.kind == "tags" and not inside:
        fmt = None
    markers = [*(fmt.markers if fmt else ()), *((OPEN, CLOSE, MISTRAL) if tools else ())]
    return Prompt(tokens, stops, fmt, inside, _special_ids(model, markers))


def _special_ids(model: LoadedModel, markers: list[str]) -> frozenset[int]:
    """Ids of the markers that are one token each (the output must spell them)."""
    ids = set()
    for marker in markers:
        found = model.tokenize(marker, add_bos=False, special=True)
        if len(found) == 1:
            ids.add(found[0])
    return frozenset(ids)


# -- checks and conversions ----------------------------------------------------


def _check_images(record: ModelRecord, images: list[str] | None) -> None:
    """Images only for a model with a projector layer, and each one base64."""
    if not images:
        return
    if not record.projectors:
        raise InvalidRequest(f"model '{record.name.display}' does not support images")
    decode_images(images)


def _with_markers(text: str, n: int) -> str:
    """A message's text with its ``n`` images marked before it (as Ollama places a
    message's images); a marker the text spells itself is taken out."""
    return MARKER * n + ("\n" if text else "") + text.replace(MARKER, "")


def _unmarked(text: str, images: list[bytes]) -> str:
    """Text of a prompt with images, without a marker it spells itself."""
    return text.replace(MARKER, "") if images else text


def _check_message(message: Message) -> Message:
    if not isinstance(message, Message):
        raise InvalidRequest("each message must be a Message with role and content")
    if message.role not in ROLES:
        raise InvalidRequest(f"invalid message role {message.role!r}: use system, user, "
                             "assistant or tool")
    if not isinstance(message.content, str):
        raise InvalidRequest("message content must be a string")
    _check_unicode(message.content, "message content")
    return message


def _check_unicode(text: str | None, field: str) -> None:
    """InvalidRequest for text UTF-8 cannot carry: a lone surrogate, which is what
    undecodable bytes (a command line's ``\xff``) or a JSON ``\ud800`` become."""
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{field} is not valid Unicode (a lone surrogate "
                             f"U+{ord(exc.object[exc.start]):04X} at character "
                             f"{exc.start})") from None


def _template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as chat templates read them (the Hugging Face and Ollama convention):
    role and content always, images, tool_calls (``{"id"?, "type": "function",
    "function": {name, arguments}}``), tool_name and thinking only when set."""
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:
            item["images"] = list(m.images)
        if m.tool_calls:
            item["tool_calls"] = [_template_call(c) for c in m.tool_calls]
        if m.tool_name:
            item["tool_name"] = m.tool_name
        if m.thinking:  # gpt-oss's templates read "thinking", Qwen3's "reasoning_content"
            item["thinking"] = item["reasoning_content"] = m.thinking
        out.append(item)
    return out


def _template_call(call: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}
    if call.id:
        item["id"] = call.id
    return item


def _template_tools(tools: list[Tool] | None) -> list[dict[str, Any]] | None:
    """Tools as chat templates read them: OpenAI's function-tool objects."""
    return [t.function_json() for t in tools] if tools else None
