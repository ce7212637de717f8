"""LOCALLAMA_CLUSTER_* and the TOML file: defaults, per-model sections, and one-line
errors for values Ray Serve would refuse later (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locallama.cluster.config import ClusterConfig
from locallama.errors import InvalidRequest


def test_defaults_scale_to_zero_after_keep_alive():
    config = ClusterConfig.from_env({"LOCALLAMA_KEEP_ALIVE": "10m"})
    scaling = config.scaling("tiny:latest")
    assert (scaling.min_replicas, scaling.max_replicas) == (0, 1)
    auto = scaling.autoscaling()
    assert auto["downscale_delay_s"] == 600
    assert auto["min_replicas"] == 0 and auto["initial_replicas"] == 1
    assert config.prefix_routing


def test_a_keep_alive_that_never_expires_never_scales_down():
    config = ClusterConfig.from_env({"LOCALLAMA_KEEP_ALIVE": "-1"})
    assert config.default.downscale_delay_s >= 1e9


def test_environment_and_file_with_a_model_section(tmp_path: Path):
    path = tmp_path / "cluster.toml"
    path.write_text('max_replicas = 3\n[models."gemma3:270m"]\nmin_replicas = 1\n'
                    'max_replicas = 8\ntarget_ongoing_requests = 2\n')
    config = ClusterConfig.from_env({
        "LOCALLAMA_CLUSTER_CONFIG": str(path), "LOCALLAMA_CLUSTER_REPLICA_CPUS": "2",
        "LOCALLAMA_CLUSTER_MODELS": "tiny, gemma3:270m", "LOCALLAMA_CLUSTER_ROUTING": "least_busy"})
    assert config.scaling("tiny:latest").max_replicas == 3
    gemma = config.scaling("gemma3:270m")
    assert (gemma.min_replicas, gemma.max_replicas, gemma.target_ongoing_requests) == (1, 8, 2)
    assert gemma.replica_cpus == 2  # the environment's default, under the section
    assert config.deploy == ("tiny:latest", "gemma3:270m")
    assert not config.prefix_routing


@pytest.mark.parametrize(("env", "says"), [
    ({"LOCALLAMA_CLUSTER_MAX_REPLICAS": "many"}, "LOCALLAMA_CLUSTER_MAX_REPLICAS must be a number"),
    ({"LOCALLAMA_CLUSTER_MIN_REPLICAS": "3", "LOCALLAMA_CLUSTER_MAX_REPLICAS": "2"},
     "max_replicas must be at least 1 and at least min_replicas"),
    ({"LOCALLAMA_CLUSTER_TARGET_ONGOING_REQUESTS": "0"}, "target_ongoing_requests must be"),
    ({"LOCALLAMA_CLUSTER_REPLICA_GPUS": "-1"}, "replica_gpus must be 0 or more"),
    ({"LOCALLAMA_CLUSTER_AFFINITY_MAX": "0"}, "LOCALLAMA_CLUSTER_AFFINITY_MAX must be at least 1"),
    ({"LOCALLAMA_CLUSTER_ROUTING": "random"}, "must be prefix or least_busy"),
    ({"LOCALLAMA_CLUSTER_CONFIG": "/nonexistent/cluster.toml"}, "cannot read"),
])
def test_bad_values_are_one_line_errors(env, says):
    with pytest.raises(InvalidRequest, match=says) as info:
        ClusterConfig.from_env(env)
    assert "\n" not in str(info.value)


def test_a_bad_file_names_the_problem(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("max_replicas = [\n")
    with pytest.raises(InvalidRequest, match="is not TOML"):
        ClusterConfig.from_env({"LOCALLAMA_CLUSTER_CONFIG": str(bad)})
    bad.write_text("replicas = 2\n")
    with pytest.raises(InvalidRequest, match="unknown key 'replicas'"):
        ClusterConfig.from_env({"LOCALLAMA_CLUSTER_CONFIG": str(bad)})
    bad.write_text('[models."tiny"]\nmax_replicas = "two"\n')
    with pytest.raises(InvalidRequest, match="max_replicas must be a number"):
        ClusterConfig.from_env({"LOCALLAMA_CLUSTER_CONFIG": str(bad)})
