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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from locallama.engine.fim import Budget, layout
from locallama.engine.templates import FallbackTemplate, Template, select_template
from locallama.engine.tools import template_supports_tools
from locallama.errors import InvalidRequest, NotSupported
from locallama.runtime.records import stored_messages
from locallama.runtime.types import ROLES, GenerateRequest, Message, Tool
from locallama.store import ModelRecord

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel
    from locallama.engine.render import Renderer


@dataclass(frozen=True)
class Prompt:
    """What the scheduler evaluates for one request.

    ``tokens``: the prompt's token ids (BOS included where the model adds one, none
    added after a ``context``); ``stops``: stop strings the template's format implies
    (the request's own ``stop`` option is added by the caller)."""

    tokens: list[int]
    stops: tuple[str, ...] = ()


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
    model loads: NotSupported for images on a vision model, InvalidRequest for images
    on a model without vision or for text that is not valid Unicode.  (Whether the
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
    if request.raw:
        text = request.prompt
    else:
        template = template_for(record, model, request.template)
        system = request.system if request.system is not None else record.system
        if isinstance(template, FallbackTemplate):
            # A base model completes text: the prompt goes in as written.
            text = f"{system}\n\n{request.prompt}" if system else request.prompt
        else:
            messages = [Message("system", system)] if system else []
            messages.append(Message("user", request.prompt))
            rendered = template.render(_template_messages(messages), renderer=renderer,
                                       model=record.name.display)
            text, stops = rendered.prompt, rendered.stops
    if request.context:
        return Prompt(list(request.context) + model.tokenize(text, add_bos=False), stops)
    return Prompt(model.tokenize(text), stops)  # raw prompts may spell special tokens too


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
                model: LoadedModel, renderer: Renderer) -> Prompt:
    """The prompt of a chat request (Ollama's /api/chat, OpenAI's chat completions):
    the model's template rendered over ``conversation`` (from ``chat_messages``) with
    a generation prompt and ``tools`` as OpenAI function-tool objects, tokenized with
    BOS. InvalidRequest when tools are given and the template does not read them;
    otherwise raises what rendering raises."""
    template = template_for(record, model)
    if tools and not template_supports_tools(template.source):
        raise InvalidRequest(f"model '{record.name.display}' does not support tools")
    rendered = template.render(_template_messages(conversation), tools=_template_tools(tools),
                               renderer=renderer, model=record.name.display)
    return Prompt(model.tokenize(rendered.prompt), rendered.stops)


# -- checks and conversions ----------------------------------------------------


def _check_images(record: ModelRecord, images: list[str] | None) -> None:
    if not images:
        return
    if record.projectors:
        raise NotSupported("vision models are not supported yet")
    raise InvalidRequest(f"model '{record.name.display}' does not support images")


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
    role and content always, images, tool_calls (``{"function": {name, arguments}}``)
    and tool_name only when set."""
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:
            item["images"] = list(m.images)
        if m.tool_calls:
            item["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}}
                                  for c in m.tool_calls]
        if m.tool_name:
            item["tool_name"] = m.tool_name
        out.append(item)
    return out


def _template_tools(tools: list[Tool] | None) -> list[dict[str, Any]] | None:
    """Tools as chat templates read them: OpenAI's function-tool objects."""
    return [t.function_json() for t in tools] if tools else None
