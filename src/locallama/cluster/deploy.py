"""Ray Serve applications for ``serve --ray``: one per model (its replicas, behind the
prefix router) and the ingress (the FastAPI app of every face over a ClusterRuntime).

Each model is its own Serve application, ``model-<name>``, so deploying, scaling or
deleting one never redeploys another; its single deployment is ``replica``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from locallama.cluster.config import ClusterConfig, Scaling

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
    serve.run(deployment.bind(model, replica_env, scaling.max_ongoing_requests),
              name=app_name(model), route_prefix=None)


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

    return {name for name in serve.status().applications if name.startswith("model-")}
