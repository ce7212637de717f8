"""The optional API key, one check for both faces (GET / stays open)."""

from __future__ import annotations

import hmac

from fastapi import Request

from locallama.errors import Unauthorized


async def check_api_key(request: Request) -> None:
    """With LOCALLAMA_API_KEY set, every API route wants ``Authorization: Bearer <key>``."""
    key = getattr(getattr(request.app.state, "settings", None), "api_key", None)
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             key.encode()):
        raise Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>'")
