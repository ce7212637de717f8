"""The optional API key (LOCALLAMA_API_KEY), one check for every face.

The guard (``server/guard.py``) asks ``refusal`` before a request reaches any
route, so an unknown path is refused as readily as a known one.
"""

from __future__ import annotations

import hmac

from locallama.errors import Unauthorized

#: (method, path) pairs that answer without a key: clients probe them to find a server
OPEN: frozenset[tuple[str, str]] = frozenset(
    (method, path) for method in ("GET", "HEAD") for path in ("/", "/api/version"))


def refusal(method: str, path: str, authorization: str, key: str | None,
            x_api_key: str = "") -> Unauthorized | None:
    """None when the request may go on, else the 401 to answer.

    ``authorization`` is the request's ``Authorization`` header and ``x_api_key`` its
    ``x-api-key`` header ("" when absent); with ``key`` set, either must carry it:
    ``Bearer <key>`` (RFC 6750; the scheme in any case) or the key itself (what
    Anthropic's clients send), compared in constant time.  ``GET``/``HEAD`` of ``/``
    and ``/api/version`` are open, and so are the chat page's files (``GET /ui/...``
    outside ``/ui/api/``: static, no data, and a browser's navigation sends no key).
    CORS preflights never reach here (browsers send them without credentials).
    """
    if not key or (method, path) in OPEN or _page_file(method, path):
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode()):
        return None
    if x_api_key and hmac.compare_digest(x_api_key.strip().encode(), key.encode()):
        return None
    return Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>' "
                        "or 'x-api-key: <key>'")


def _page_file(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path == "/ui" or path.startswith("/ui/")) and \
        not path.startswith("/ui/api/")
