"""The render worker: the process side of :mod:`locallama.engine.render`.

Started as ``python -m locallama.engine.render_worker FD MAX_BYTES`` by a
``Renderer``; it caps its own address space, then compiles and renders the templates
the parent sends over the socket (with :mod:`locallama.engine.templates`' sandbox)
until the parent's end closes.  Only this process imports the templates module for
rendering, so the parent side (``render``) imports nothing of it.
"""

from __future__ import annotations

import json
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

import jinja2

from locallama.errors import TemplateError
from locallama.units import MIB

#: The address-space room a worker gets beyond its size after start-up, besides
#: 4 x max_bytes (the output as pieces, joined, encoded, and the request itself).
MEMORY_HEADROOM = 256 * MIB
_CACHE = 64  # compiled templates a worker keeps
_TOO_DEEP = "chat template does not compile: it is nested too deeply"


def _serve(fd: int, max_bytes: int) -> None:
    """The worker's loop: read (source, contexts, max_bytes), answer b"o"+text or
    b"e"+JSON {kind, message}; end when the parent's end closes.  No contexts: only
    compile (the answer is b"o")."""
    import resource

    from locallama.engine import templates  # imported before the cap is measured

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        cap = _address_space() + MEMORY_HEADROOM + 4 * max_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):  # pragma: no cover - platforms without RLIMIT_AS
        pass
    conn = Connection(fd)
    cache: dict[str, Any] = {}
    while True:
        try:
            source, contexts, limit = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = b"o" + _render(cache, templates, source, contexts, limit)
        except templates.OutputTooLarge:
            answer = b"e" + json.dumps({"kind": "bytes", "message": ""}).encode()
        except MemoryError:
            cache.clear()
            conn.send_bytes(b"e" + json.dumps({"kind": "memory", "message":
                                               "the render ran out of memory"}).encode())
            return  # the parent replaces this worker
        except TemplateError as exc:
            answer = b"e" + json.dumps({"kind": "template", "message": str(exc)}).encode()
        except RecursionError:  # outside the compile and the template's own code
            answer = b"e" + json.dumps({"kind": "template", "message":
                                        "chat template nested too deeply"}).encode()
        except UnicodeEncodeError:  # a lone surrogate the callers' checks did not see
            answer = b"e" + json.dumps({"kind": "template", "message":
                                        "the rendered prompt is not valid Unicode (a lone "
                                        "surrogate)"}).encode()
        conn.send_bytes(answer)


def _render(cache: dict[str, Any], templates: Any, source: str,
            contexts: list[dict[str, Any]], max_bytes: int) -> bytes:
    template = cache.get(source)
    if template is None:
        env = templates.sandbox(max_bytes)
        try:
            template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template does not compile: {exc.message} "
                                f"(line {exc.lineno})") from None
        except MemoryError:
            raise
        except RecursionError:
            raise TemplateError(_TOO_DEEP) from None
        except Exception as exc:  # the code jinja2 generated does not compile either
            raise TemplateError(f"chat template does not compile: "
                                f"{type(exc).__name__}: {str(exc)[:500]}") from None
        if len(cache) >= _CACHE:
            cache.pop(next(iter(cache)))
        cache[source] = template
    pieces: list[str] = []
    chars = 0
    for context in contexts:
        for piece in templates.guarded(template.generate, context):
            chars += len(piece)
            if chars > max_bytes:  # a character is at least one byte
                raise templates.OutputTooLarge
            pieces.append(piece)
    text = "".join(pieces).encode("utf-8")
    if len(text) > max_bytes:
        raise templates.OutputTooLarge
    return text


def _address_space() -> int:
    """This process's virtual size in bytes (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize")


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
