"""Ray Serve applications for ``serve --ray``: one per model (its replicas, behind the
prefix router) and the ingress (the FastAPI app of every face over a ClusterRuntime).

Each model is its own Serve application, ``model-<name>``, so deploying, scaling or
deleting one never redeploys another; its single deployment is ``replica``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from locallama import errors
from locallama.cluster.config import ClusterConfig, Scaling
from locallama.errors import LocallamaError

REPLICA_DEPLOYMENT = "replica"
INGRESS_APP = "locallama"


def app_name(model: str) -> str:
    """The Serve application of a model (``gemma3:270m`` -> ``model-gemma3_270m``)."""
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def replica_options(scaling: Scaling, memory: int | None) -> dict[str, Any]:
    """The replica actor's Ray resource request: CPUs and GPUs from the scaling
    settings, ``memory`` (bytes, the fit estimate: weights + KV cache + compute) so Ray
    places it only on a node with that much to spare."""
    options: dict[str, Any] = {"num_cpus": scaling.replica_cpus}
    if scaling.replica_gpus:
        options["num_gpus"] = scaling.replica_gpus
    if memory:
        options["memory"] = int(memory)
    return options


def deploy_model(model: str, env: Mapping[str, str], config: ClusterConfig,
                 memory: int | None) -> None:
    """Deploy (or update) ``model``'s application and wait until it runs.  ``env``: the
    LOCALLAMA_* environment for its replicas."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from locallama.cluster.replica import ModelReplica
    from locallama.cluster.routing import PrefixRouter

    scaling = config.scaling(model)
    router = RequestRouterConfig(request_router_class=PrefixRouter,
                                 request_router_kwargs={"max_keys": config.affinity_max,
                                                        "prefix": config.prefix_routing})
    autoscaling = scaling.autoscaling()
    fixed = scaling.min_replicas == scaling.max_replicas
    deployment = serve.deployment(
        ModelReplica, name=REPLICA_DEPLOYMENT,
        num_replicas=scaling.min_replicas if fixed else "auto",
        autoscaling_config=None if fixed else autoscaling,
        max_ongoing_requests=scaling.max_ongoing_requests,
        ray_actor_options=replica_options(scaling, memory),
        request_router_config=router,
        graceful_shutdown_timeout_s=10,
    )
    replica_env = dict(env)
    if config.node_home:
        replica_env["LOCALLAMA_HOME"] = config.node_home
        replica_env.pop("LOCALLAMA_MODELS", None)
    try:
        serve.run(deployment.bind(model, replica_env, scaling.max_ongoing_requests),
                  name=app_name(model), route_prefix=None)
    except RuntimeError as exc:
        # Its replicas could not start (a model file gone bad, too little memory): the
        # cause as one typed error, and no failed application left behind (a request
        # to it would wait for replicas that never come; the next one deploys anew).
        message = _failure(app_name(model)) or str(exc)
        delete_model(model)
        raise replica_error(model, message) from None


def _failure(app: str) -> str:
    """What Serve says about an application's failed deployment ("" if nothing)."""
    from ray import serve

    with contextlib.suppress(Exception):
        status = serve.status().applications[app]
        return "\n".join(d.message for d in status.deployments.values() if d.message) \
            or status.message
    return ""


def replica_error(model: str, message: str) -> LocallamaError:
    """A replica's start-up failure as the locallama error its constructor raised
    (Serve passes only a traceback's text): the last ``locallama.errors.NAME: text``
    line, else one line naming the model and the last line of the message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        if found := re.match(r"locallama\.errors\.(\w+): (.*)$", line):
            cls = getattr(errors, found[1], None)
            if isinstance(cls, type) and issubclass(cls, LocallamaError) \
                    and cls.__init__ is LocallamaError.__init__:
                return cls(found[2])
            break
    last = lines[-1] if lines else "no reason given"
    return LocallamaError(f"cannot start a replica of {model}: {last}")


def delete_model(model: str) -> None:
    """Remove ``model``'s application (every replica unloads); no error if absent."""
    from ray import serve

    serve.delete(app_name(model), _blocking=True)


def model_handle(model: str) -> Any:
    """The deployment handle the ingress calls ``model``'s replicas through."""
    from ray import serve

    return serve.get_deployment_handle(REPLICA_DEPLOYMENT, app_name=app_name(model))


def deployed_models() -> set[str]:
    """Serve application names of the models deployed now (``model-…``)."""
    from ray import serve

    return {name for name, app in serve.status().applications.items()
            if name.startswith("model-") and app.status != "DEPLOY_FAILED"}
