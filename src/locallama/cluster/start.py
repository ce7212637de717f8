"""Starting and stopping ``serve --ray``: connect to (or start) a Ray cluster, start the
head actor on this node, deploy the ingress on this node and the models named in
LOCALLAMA_CLUSTER_MODELS, and let Ray Serve's proxy listen on LOCALLAMA_HOST.

The process that called ``start`` is the head's driver: the head actor (store +
directory) and the ingress live as long as it does (see docs/scale.md on a head
failure).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from locallama.cluster.config import ClusterConfig
from locallama.errors import LocallamaError


def require_ray() -> None:
    """Raise one line if Ray Serve is not installed (the ``cluster`` extra)."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise LocallamaError("serve --ray needs Ray Serve: pip install 'locallama[cluster]'") \
            from None


def locallama_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The LOCALLAMA_* variables of ``env`` (this process's by default): what the ingress
    and every replica are started with, so they read the settings the head did."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k.startswith("LOCALLAMA_")}


def check_models(config: ClusterConfig, store: Any) -> None:
    """Every model LOCALLAMA_CLUSTER_MODELS names is in the head's store (InvalidRequest
    naming the setting otherwise), so a typo stops ``serve --ray`` before Ray starts."""
    from locallama.errors import InvalidRequest, ModelNotFound

    for model in config.deploy:
        try:
            store.get(model)
        except ModelNotFound as exc:
            raise InvalidRequest(f"LOCALLAMA_CLUSTER_MODELS: {exc}") from None


@dataclass
class Cluster:
    """A started ``serve --ray``: where it answers, and the config it runs with."""

    url: str
    config: ClusterConfig
    started_ray: bool  # this process started the Ray cluster (so it shuts it down)
    head: Any = None  # the head actor's handle: it lives while this process holds it


def start(address: str | None, env: Mapping[str, str] | None = None,
          num_cpus: int | None = None) -> Cluster:
    """Start serving on Ray.  ``address``: an existing cluster ("auto", "HOST:PORT",
    "ray://HOST:PORT") or None for RAY_ADDRESS, else a new local one (``num_cpus``
    logical CPUs; None: the machine's).  With Ray already initialized in this process,
    that cluster.  Raises LocallamaError for a bad setting or an unreachable cluster;
    nothing is left deployed then."""
    require_ray()
    import ray
    from ray import serve
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from locallama.cluster.deploy import INGRESS_APP, deploy_model
    from locallama.cluster.head import HEAD_NAME, NAMESPACE, Head
    from locallama.cluster.ingress import Ingress
    from locallama.runtime.local import LocalRuntime
    from locallama.settings import Settings
    from locallama.store.store import Store

    env = locallama_env(env)
    settings = Settings.from_env(env)
    config = ClusterConfig.from_env(env)
    check_models(config, Store(settings.models_dir))  # before anything starts
    started = not ray.is_initialized()
    if started:
        # None: RAY_ADDRESS, else a new local cluster ("local": never a stale one that
        # an earlier run's ray_current_cluster file points at)
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":
            # this cluster's proxy will listen on LOCALLAMA_HOST: a port another server
            # holds fails here, in one line (Serve's proxy fails only in its own log,
            # and the banner would claim the other server's address)
            from locallama.server.listen import bind

            bind(settings.host, settings.port).close()
        try:
            ray.init(address=address, namespace=NAMESPACE, num_cpus=num_cpus,
                     include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise LocallamaError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    head = ray.remote(Head).options(name=HEAD_NAME, namespace=NAMESPACE, num_cpus=0,
                                    max_concurrency=16, scheduling_strategy=here,
                                    get_if_exists=True).remote(str(settings.models_dir))
    ray.get(head.replicas.remote())  # it is up
    serve.start(http_options={"host": settings.host, "port": settings.port})
    on_head = {f"node:{ray.util.get_node_ip_address()}": 0.001}  # the head's store is here
    ingress = serve.deployment(Ingress, name="ingress", num_replicas=1,
                               max_ongoing_requests=1024,
                               ray_actor_options={"num_cpus": 0, "resources": on_head})
    serve.run(ingress.bind(env), name=INGRESS_APP, route_prefix="/")
    store = LocalRuntime(settings)
    try:
        for model in config.deploy:
            record = store.store.get(model)
            memory = store.estimate(model, int(record.params.get("num_ctx", 4096)),
                                    settings.num_parallel or 4)
            deploy_model(model, env, config, memory)
    finally:
        store.close()
    return Cluster(settings.base_url, config, started, head)


def stop(cluster: Cluster) -> None:
    """Delete every application, stop Ray Serve, and Ray itself if ``start`` began it."""
    import ray
    from ray import serve

    serve.shutdown()
    if cluster.head is not None:
        ray.kill(cluster.head)
        cluster.head = None
    if cluster.started_ray:
        ray.shutdown()


def serve_forever(address: str | None, say: Callable[[str], None]) -> None:
    """``locallama serve --ray``: start, say where it listens, serve until SIGINT or
    SIGTERM, then stop what ``start`` started."""
    import signal
    import threading

    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster = start(address)
        try:
            say(f"locallama is listening on {cluster.url} (Ray Serve; "
                f"replicas per model: GET {cluster.url}/api/cluster)")
            done.wait()
        finally:
            stop(cluster)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
