"""A route class for faces whose bodies are JSON whatever the Content-Type says.

Ollama reads every body as JSON (its handlers call ``ShouldBindJSON``), so
``curl -d '{...}'`` works though curl sends ``application/x-www-form-urlencoded``,
and so does a client that sends ``text/plain`` or no Content-Type at all.  FastAPI
would parse only ``application/json`` and answer anything else with a validation
error about missing fields.  Both faces (the Ollama API and the OpenAI API under
/v1) read bodies this way; a body that is not JSON still gets each face's usual
"not valid JSON" 400 (server/http_errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class JSONBodyRoute(APIRoute):
    """An APIRoute that reads a POST or DELETE body as JSON, whatever its Content-Type."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if request.method in ("POST", "DELETE") and kind != "application/json":
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                scope = {**request.scope,
                         "headers": [*headers, (b"content-type", b"application/json")]}
                request = Request(scope, request.receive)
            return await handler(request)

        return route
