"""The FastAPI application: every face (Ollama, OpenAI, Anthropic) on one port behind
one guard, errors mapped once per face (framework errors too: an unknown route, a wrong
method, a body that is not JSON), and ``/metrics``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from locallama import __version__
from locallama.errors import (
    InvalidRequest,
    LocallamaError,
    MethodNotAllowed,
    RouteNotFound,
)
from locallama.metrics import LoadedSample, Metrics
from locallama.runtime.base import Runtime
from locallama.server.guard import Guard, is_anthropic_path, is_openai_path
from locallama.server.http_errors import error_response, validation_error_response
from locallama.server.model_path import ModelPath
from locallama.server.streaming import WatchDisconnect
from locallama.settings import Settings
from locallama.store.responses import ResponseStore

# uvicorn's event loop and HTTP parser, named rather than "auto": installing the
# cluster extra brings uvloop and httptools, and `serve` must not change behaviour
# (its 400s for malformed HTTP, its disconnect timing) with what else is installed.
UVICORN_OPTIONS = {"loop": "asyncio", "http": "h11"}


def create_app(runtime: Runtime, settings: Settings, *, log_prompts: bool = False) -> FastAPI:
    """Build the app around a Runtime (LocalRuntime in ``serve``; any Runtime in tests).

    ``log_prompts``: the access log (logger ``locallama.access``) also carries each
    request's prompt fields; off by default.
    """
    from locallama.server import (
        anthropic_api,
        infill_api,
        ollama_api,
        openai_api,
        rerank_api,
        responses_api,
        tokens_api,
        web,
        web_results,
    )

    app = FastAPI(title="locallama", version=__version__,
                  description="The Ollama, OpenAI and Anthropic APIs for local models.")
    app.state.runtime = runtime
    app.state.settings = settings
    # the Responses API's stored answers (opened on first use)
    app.state.responses = ResponseStore(settings.responses_db, settings.responses_max)
    app.state.metrics = metrics = Metrics(lambda: _loaded(runtime))

    def face(request: Request) -> dict[str, bool]:  # neither: the Ollama face answers
        path = request.url.path
        return {"openai": is_openai_path(path), "anthropic": is_anthropic_path(path)}

    @app.exception_handler(LocallamaError)
    async def _locallama_error(request: Request, exc: LocallamaError) -> JSONResponse:
        return error_response(exc, **face(request))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc, **face(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_response(_typed(request, exc), **face(request))
        response.status_code = exc.status_code
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.get("/", include_in_schema=True)
    async def root() -> Response:
        return Response("locallama is running", media_type="text/plain")

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus' text exposition format (version 0.0.4).  Not async: it asks each
        runner for its queue, which must not hold the event loop."""
        return Response(metrics.exposition(), media_type=metrics.content_type)

    app.include_router(ollama_api.router)
    app.include_router(anthropic_api.router)  # before openai's: /v1/messages is its
    app.include_router(openai_api.router)
    app.include_router(responses_api.router)
    app.include_router(rerank_api.router)  # /v1/rerank and /api/rerank
    app.include_router(tokens_api.router)  # vLLM's and llama-server's tokenizer routes
    app.include_router(infill_api.router)  # llama-server's /infill
    app.include_router(web_results.router)  # the Measurements view (before the mount)
    web.mount(app)  # the chat page at /ui/
    app.add_middleware(WatchDisconnect)  # work stops when its client leaves
    # Added last, so outermost: nothing runs for a request the guard refuses.
    app.add_middleware(Guard, settings=settings, metrics=metrics, routes=app.router.routes,
                       log_prompts=log_prompts)
    app.add_middleware(ModelPath)  # /model/{name}/… : a per-model base URL (lm-eval)
    return app


def _typed(request: Request, exc: StarletteHTTPException) -> LocallamaError:
    """The typed error for a status Starlette or FastAPI raised: an unknown route, a
    wrong method, a body FastAPI could not parse.  (401, 403 and 413 never get here:
    the guard answers them before any route.)"""
    if exc.status_code == 404:
        return RouteNotFound(f"no route {request.url.path} here")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"{request.method} {request.url.path} is not allowed" +
                                (f"; this path takes {allowed}" if allowed else ""))
    if exc.status_code == 400:
        return InvalidRequest("the request body is not valid JSON (UTF-8 text expected)")
    return LocallamaError(str(exc.detail))


def _loaded(runtime: Runtime) -> list[LoadedSample]:
    """The loaded models for /metrics; a runtime that cannot say reports none."""
    try:
        infos = runtime.ps()
    except Exception:  # a scrape must not fail because the runtime did
        return []
    try:
        queues = runtime.waiting()
    except Exception:
        queues = {}
    return [LoadedSample(i.name, i.size, queues.get(i.name, 0)) for i in infos]
