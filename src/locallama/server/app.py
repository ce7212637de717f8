"""The FastAPI application: both faces on one port, errors mapped once per face."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from locallama import __version__
from locallama.errors import LocallamaError
from locallama.runtime.base import Runtime
from locallama.server.streaming import WatchDisconnect
from locallama.settings import Settings


def create_app(runtime: Runtime, settings: Settings) -> FastAPI:
    """Build the app around a Runtime (LocalRuntime in ``serve``; any Runtime in tests)."""
    from locallama.server import ollama_api, openai_api

    app = FastAPI(title="locallama", version=__version__,
                  description="The Ollama API and the OpenAI API for local models.")
    app.state.runtime = runtime
    app.state.settings = settings

    def is_openai(request: Request) -> bool:
        return request.url.path.startswith("/v1")

    @app.exception_handler(LocallamaError)
    async def _locallama_error(request: Request, exc: LocallamaError) -> JSONResponse:
        face = openai_api if is_openai(request) else ollama_api
        return face.error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        face = openai_api if is_openai(request) else ollama_api
        return face.validation_error_response(exc)

    @app.get("/", include_in_schema=True)
    async def root() -> Response:
        return Response("locallama is running", media_type="text/plain")

    @app.head("/", include_in_schema=False)
    async def root_head() -> Response:
        return Response(media_type="text/plain")

    app.include_router(ollama_api.router)
    app.include_router(openai_api.router)
    app.add_middleware(WatchDisconnect)  # work stops when its client leaves
    return app
