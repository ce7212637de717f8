"""The per-request cancellation token, at the bottom of the stack.

``CLIENT_GONE`` holds a ``threading.Event`` for the request in hand: the server
(``server/streaming.WatchDisconnect``) sets one per HTTP request and sets the event
when the client disconnects; blocking work below the faces (the template renderer,
the scheduler's wait for pieces) checks it and stops.  ``anyio.to_thread`` copies
context variables, so worker threads see their request's event.  Outside a server
request it holds None and nothing is cancelled this way.
"""

from __future__ import annotations

import contextvars
import threading

CLIENT_GONE: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "locallama_client_gone", default=None)
