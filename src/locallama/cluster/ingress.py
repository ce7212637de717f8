"""The ingress deployment: ``server/app.py``'s app, every face unchanged, built over a
ClusterRuntime inside a Ray Serve replica on the head node (its store is the head's).

Ray Serve's HTTP proxy listens on LOCALLAMA_HOST and hands each request to this app;
the app's guard (Host, Origin, API key, body limits) runs as in ``serve``.  One extra
route, ``GET /api/cluster``, lists the live replicas (model, node, requests in flight
and served) from the head's directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ray import serve

from locallama.cluster.config import ClusterConfig


@serve.ingress()
class Ingress:
    """``env``: the LOCALLAMA_* environment ``serve --ray`` was started with (this
    replica's settings, and its replicas')."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from locallama.cluster.runtime import ClusterRuntime
        from locallama.runtime.local import LocalRuntime
        from locallama.settings import Settings

        for key, value in env.items():  # this process is the ingress's alone
            os.environ[key] = value
        self.settings = Settings.from_env(env)
        self.runtime = ClusterRuntime(LocalRuntime(self.settings), ClusterConfig.from_env(env),
                                      env)

    def __serve_build_asgi_app__(self) -> Any:
        from locallama.server.app import create_app
        from locallama.server.runtime_calls import call

        app = create_app(self.runtime, self.settings)
        runtime = self.runtime

        @app.get("/api/cluster")
        async def cluster() -> dict[str, Any]:
            """The live replicas: model, replica id, node, pid, ongoing, served."""
            return {"replicas": await call(runtime.replicas, face="Ollama")}

        return app

    def __del__(self) -> None:
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.close()
