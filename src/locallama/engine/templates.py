"""Chat templates: turn a list of messages into the prompt a model was trained on.

Templates come from strangers (a GGUF's ``tokenizer.chat_template`` or a
Modelfile TEMPLATE), so they are compiled and rendered in jinja2's immutable
sandbox: a template that reaches for Python internals fails with TemplateError
and nothing else happens.  Compiling and rendering both happen in a worker process
under a time limit, an output-size limit and a memory cap
(:mod:`locallama.engine.render`), so a template that takes forever to compile,
loops forever, nests too deeply or builds a huge string is stopped, names its model
and limit, and leaves nothing behind; this process never compiles a stranger's
Jinja.  The one step that runs here, translating a Go template to Jinja, is a single
linear scan.

Three kinds are understood:

* Jinja templates (the Hugging Face convention: ``messages``,
  ``add_generation_prompt``, ``bos_token``, ``eos_token``, ``tools``).
* Ollama's Go templates in their simple prompt/response form
  (``{{ .System }}``, ``{{ .Prompt }}``, ``{{ .Response }}``, ``{{ if }}``):
  translated to Jinja and rendered turn by turn, as Ollama does.  Go templates
  that iterate over ``.Messages`` are not translated; the model's own GGUF
  template is used for them instead (see :func:`select_template`).
* No template: the documented plain fallback below, for base models.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg

from locallama.engine.render import Renderer, default_renderer
from locallama.errors import TemplateError

#: What ``*`` and ``**`` may build before they run, when no limit is given.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024

#: The fallback for models without a template (the bundled base model has none).
#: The stop sequence keeps a base model from writing the user's next line.
FALLBACK_STOPS = ("\nUser:",)


def _raise(message: str) -> None:
    raise TemplateError(f"chat template error: {message}")


class OutputTooLarge(Exception):
    """Raised inside a render that would write (or build) more than its byte limit."""


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """Reaching for an unsafe attribute is an error, not a silent empty string;
    ``*`` and ``**`` are checked before they run, so ``'a' * 10**9`` is refused
    without being built (and, intercepted, are never folded at compile time)."""

    intercepted_binops = frozenset({"*", "**", "%"})
    max_bytes = DEFAULT_MAX_BYTES

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a "
                            f"{type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > self.max_bytes:
                    raise OutputTooLarge
            return operator.mul(left, right)
        if op == "**" and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right > 0 \
                and right * abs(left).bit_length() > 8 * self.max_bytes:
            raise OutputTooLarge
        return super().call_binop(context, op, left, right)


def _at_render_time(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that jinja2 cannot evaluate while compiling.

    jinja2 folds a filter over constants into the compiled template (even with its
    optimizer off), so ``{{ 'x'|center(300000000) }}`` would build its string in
    the process that compiles it; a ``pass_context`` filter is never folded.
    """
    kind = getattr(func, "jinja_pass_arg", None)
    if kind is _PassArg.context:
        return func

    @jinja2.pass_context
    def call(context: Any, *args: Any, **kwargs: Any) -> Any:
        if kind is _PassArg.eval_context:
            return func(context.eval_ctx, *args, **kwargs)
        if kind is _PassArg.environment:
            return func(context.environment, *args, **kwargs)
        return func(*args, **kwargs)

    return call


def sandbox(max_bytes: int = DEFAULT_MAX_BYTES) -> ImmutableSandboxedEnvironment:
    """The environment every template compiles and renders in: jinja2's immutable
    sandbox, strict about unsafe attributes, with ``*``/``**`` bounded by
    ``max_bytes`` and nothing evaluated at compile time (``optimized=False``, no
    filter or ``*``/``**``/``%`` folded over constants: compiling a stranger's
    template must not run it).  Used by the renderer's workers, not the server."""
    env = _StrictSandbox(
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined,
        optimized=False,
    )
    env.filters = {name: _at_render_time(f) for name, f in env.filters.items()}
    env.max_bytes = max_bytes
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@dataclass(frozen=True)
class Rendered:
    prompt: str
    stops: tuple[str, ...] = ()  # stop sequences the template format implies


class ChatTemplate:
    """A Jinja template; ``render`` returns the prompt for a conversation.

    Nothing is compiled here.  ``check`` compiles the template and ``render`` runs
    it, both through ``renderer`` (a worker process under the time, output and
    memory limits; the process-wide default when None), and raise TemplateError
    (a syntax error, a template nested too deeply, a failure while rendering),
    TemplateLimitExceeded (naming ``model``) or Cancelled.
    """

    kind = "jinja"

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

    def check(self, *, renderer: Renderer | None = None, model: str = "") -> None:
        """Compile the template in a worker: returns None, or raises as ``render`` does."""
        (renderer or default_renderer()).check(self.source, model=model)

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        *,
        renderer: Renderer | None = None,
        model: str = "",
        variables: dict[str, Any] | None = None,
    ) -> Rendered:
        """The prompt for ``messages``; ``variables`` are further names the template
        may read (``enable_thinking``, ``reasoning_effort``)."""
        context: dict[str, Any] = {
            **(variables or {}),
            "messages": messages,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        if tools:
            context["tools"] = tools
        return Rendered((renderer or default_renderer()).render(self.source, [context],
                                                                model=model))


class GoPromptTemplate:
    """Ollama's prompt/response Go template, rendered once per user turn.

    Translated to Jinja here (TemplateError when it is not the supported subset);
    ``check`` and ``render`` work as :class:`ChatTemplate`'s do."""

    kind = "go"

    def __init__(self, source: str) -> None:
        self.source = source
        self.jinja = go_to_jinja(source)

    def check(self, *, renderer: Renderer | None = None, model: str = "") -> None:
        """Compile the translated template in a worker: None, or raises as ``render`` does."""
        (renderer or default_renderer()).check(self.jinja, model=model)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None, *,
               renderer: Renderer | None = None, model: str = "",
               variables: dict[str, Any] | None = None) -> Rendered:
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        turns: list[tuple[str, str]] = []
        for m in messages:
            if m.get("role") == "user":
                turns.append((m.get("content", ""), ""))
            elif m.get("role") == "assistant" and turns:
                turns[-1] = (turns[-1][0], turns[-1][1] + m.get("content", ""))
        if not turns:
            turns.append(("", ""))
        # Earlier turns carry their responses; the last one leaves the response
        # slot empty, and generation continues from there.
        contexts = [
            {"System": system if i == 0 else "", "Prompt": prompt, "Response": response}
            for i, (prompt, response) in enumerate(turns)
        ]
        return Rendered((renderer or default_renderer()).render(self.jinja, contexts,
                                                                model=model))


class FallbackTemplate:
    """Plain "User:/Assistant:" turns, documented in the README, for template-less models."""

    kind = "fallback"
    source = ""

    def check(self, *, renderer: Renderer | None = None, model: str = "") -> None:
        """Nothing to compile."""

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None, *,
               renderer: Renderer | None = None, model: str = "",
               variables: dict[str, Any] | None = None) -> Rendered:
        lines = []
        for m in messages:
            role, content = m.get("role", "user"), m.get("content", "")
            if role == "system":
                lines.append(f"{content}\n")
            else:
                label = {"assistant": "Assistant", "tool": "Tool"}.get(role, "User")
                lines.append(f"{label}: {content}")
        if add_generation_prompt:
            lines.append("Assistant:")
        return Rendered("\n".join(lines), FALLBACK_STOPS)


Template = ChatTemplate | GoPromptTemplate | FallbackTemplate


def is_go_template(source: str) -> bool:
    """Whether ``source`` reads like a Go template (a ``{{ .Field }}``, ``{{ $x }}``,
    ``{{ if .X }}``, ``{{ range }}`` or ``{{ end }}`` action); linear in its length."""
    return bool(re.search(r"\{\{-?\s*(\.|\$|if\s+\.|range\s|end\s*-?\}\})", source))


def select_template(
    modelfile_template: str | None,
    gguf_template: str | None,
    bos_token: str = "",
    eos_token: str = "",
) -> Template:
    """Pick the template for a model: Modelfile TEMPLATE, else the GGUF's, else fallback.

    Nothing is compiled (``check`` does that, in a worker).  Raises TemplateError for
    a Go template outside the supported subset.
    """
    if modelfile_template:
        if not is_go_template(modelfile_template):
            return ChatTemplate(modelfile_template, bos_token, eos_token)
        if "range" not in modelfile_template and "Messages" not in modelfile_template:
            return GoPromptTemplate(modelfile_template)
    if gguf_template:
        return ChatTemplate(gguf_template, bos_token, eos_token)
    return FallbackTemplate()


def go_to_jinja(source: str) -> str:
    """Translate the prompt/response subset of Go templates to Jinja.

    One left-to-right scan (linear in ``len(source)``): text outside ``{{ … }}`` is
    kept as it is; each action ends at the first ``}}`` after its ``{{``.  Raises
    TemplateError for an action that is never closed (no ``}}``, or another ``{{``
    before it), an unsupported expression, or unbalanced ``if``/``end``.
    """
    stack: list[str] = []
    out: list[str] = []
    at = 0
    while True:
        start = source.find("{{", at)
        if start < 0:
            out.append(source[at:])
            break
        end = source.find("}}", start + 2)
        if end < 0 or source.find("{{", start + 2, end) >= 0:
            raise TemplateError(f"Go template has an unclosed action at character {start}")
        out.append(source[at:start])
        out.append(_go_action(source[start + 2:end], stack))
        at = end + 2
    if stack:
        raise TemplateError("Go template has an {{ if }} without an {{ end }}")
    return "".join(out)


def _go_action(inner: str, stack: list[str]) -> str:
    """The Jinja for one Go action, ``inner`` being the text between ``{{`` and ``}}``;
    ``stack`` holds the open ``if`` blocks."""
    lt = "-" if inner.startswith("-") else ""  # Go's and Jinja's whitespace trimming
    inner = inner[len(lt):]
    rt = "-" if inner.endswith("-") else ""
    body = (inner[:-1] if rt else inner).strip()
    if body in ("if", "else if", "with", "range", ""):
        raise TemplateError(f"Go template action {{{{ {body} }}}} is incomplete")
    if body.startswith("if "):
        stack.append("if")
        return f"{{%{lt} if {_go_expr(body[3:])} %{rt}}}"
    if body.startswith("else if "):
        return f"{{%{lt} elif {_go_expr(body[8:])} %{rt}}}"
    if body == "else":
        return f"{{%{lt} else %{rt}}}"
    if body == "end":
        if not stack:
            raise TemplateError("Go template has an {{ end }} without an {{ if }}")
        stack.pop()
        return f"{{%{lt} endif %{rt}}}"
    if body.startswith("/*"):
        return ""
    return f"{{{{{lt} {_go_expr(body)} {rt}}}}}"


_GO_FIELD = re.compile(r"\$?\.(System|Prompt|Response|Suffix)")
_GO_UNSUPPORTED = re.compile(r"[^\w\s\"'()]")


def _go_expr(text: str) -> str:
    text = _GO_FIELD.sub(r"\1", text)
    if _GO_UNSUPPORTED.search(text):
        raise TemplateError(f"unsupported Go template expression: {text!r}")
    return text


def guarded(generate: Callable[..., Iterator[str]], context: dict[str, Any]
            ) -> Iterator[str]:
    """The pieces of ``generate(**context)`` (a template's ``generate``), with any
    failure of the template turned into TemplateError; MemoryError and
    OutputTooLarge pass through for the renderer to report as limits."""
    try:
        yield from generate(**context)
    except (TemplateError, MemoryError, OutputTooLarge):
        raise
    except SecurityError as exc:
        raise TemplateError(f"chat template tried an unsafe operation: {exc}") from None
    except RecursionError:
        raise TemplateError("chat template failed: it recursed or nested too deeply") from None
    except Exception as exc:  # any failure inside a stranger's template is its fault
        raise TemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from None
