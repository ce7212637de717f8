"""Serving on a Ray cluster (``locallama serve --ray``), the ``cluster`` extra.

``config`` (LOCALLAMA_CLUSTER_* and the TOML file), ``keys`` (routing keys, the
affinity table) and ``start``'s ``require_ray`` import no Ray; ``routing`` (the prefix
router), ``head`` (store + replica directory actor), ``replica`` (a model's replica),
``runtime`` (ClusterRuntime, the ingress's Runtime), ``ingress`` and ``deploy`` need
Ray Serve.  See docs/scale.md.
"""
