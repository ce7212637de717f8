"""A per-model base URL: ``/model/{name}/…`` is the server with ``name`` as the model a
request means when it names none.

lm-evaluation-harness's ``local-completions`` with ``tokenizer_backend=remote`` finds
the tokenizer under its ``base_url`` with ``/v1/completions`` cut off, and its
``/tokenizer_info``, ``/tokenize`` and ``/detokenize`` requests carry no model.  With
one model stored or loaded the server picks it (``api/tokens.default_model``); with
several it cannot.  So the harness is given
``base_url=http://127.0.0.1:11434/model/gemma3:270m/v1/completions``: the completion
names its model in the body as always, and the tokenizer requests reach
``/model/gemma3:270m/tokenize``, which is ``/tokenize`` for that model.

A pure ASGI middleware: it rewrites the path (``path`` and ``raw_path``) and puts the
name in the request's state as ``path_model``; a model named in the body or query
still wins.  The name is one path segment, percent-decoded, so a name with a slash
(``hf.co/user/repo:Q4_K_M``) is written with ``%2F``.  An empty name is left alone
(the app answers 404 for ``/model//…``).
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = b"/model/"


class ModelPath:
    """Rewrites ``/model/{name}/rest`` to ``/rest`` with ``state["path_model"] = name``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode("utf-8")
            if raw.startswith(PREFIX):
                segment, slash, rest = raw[len(PREFIX):].partition(b"/")
                name = unquote(segment.decode("latin-1"))
                if name and slash:
                    scope = dict(scope)
                    scope["raw_path"] = b"/" + rest
                    scope["path"] = unquote("/" + rest.decode("latin-1"))
                    scope["state"] = {**scope.get("state", {}), "path_model": name}
        await self.app(scope, receive, send)


def path_model(state: object) -> str | None:
    """The model a ``/model/{name}/`` base URL named, if the request came that way."""
    return getattr(state, "path_model", None)
