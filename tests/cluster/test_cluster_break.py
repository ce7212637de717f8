"""serve --ray under abuse: TOML and settings Ray Serve would refuse with a traceback
(or a crash), a LOCALLAMA_CLUSTER_MODELS typo and a taken port (one line, before Ray
starts), and a stored model gone bad (its replicas cannot start: a typed error every
time, never a request left waiting for replicas that never come)."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from liveserver import free_port
from locallama.cluster.config import ClusterConfig
from locallama.errors import BadModelFile, InvalidRequest, LocallamaError
from runtimes import local_runtime


@pytest.mark.parametrize(("text", "match"), [
    ("models = 3\n", r"models must be a table"),
    ('[models."tiny"]\nmax_replicas = 2.5\n', r"max_replicas must be a whole number, not 2.5"),
    ("min_replicas = 1.0\n", r"min_replicas must be a whole number"),
    ('[models."tiny"]\nmax_replicas = 1e400\n', r"max_replicas must be a number, not inf"),
    ("target_ongoing_requests = nan\n", r"target_ongoing_requests must be a number"),
])
def test_a_toml_value_ray_would_refuse_is_one_line(tmp_path: Path, text: str, match: str):
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with pytest.raises(InvalidRequest, match=match):
        ClusterConfig.from_env({"LOCALLAMA_CLUSTER_CONFIG": str(path)})


def test_a_fractional_cpu_request_is_still_accepted(tmp_path: Path):
    path = tmp_path / "cluster.toml"
    path.write_text("replica_cpus = 0.5\ntarget_ongoing_requests = 2.5\nmax_replicas = 2\n")
    scaling = ClusterConfig.from_env({"LOCALLAMA_CLUSTER_CONFIG": str(path)}).default
    assert (scaling.replica_cpus, scaling.target_ongoing_requests, scaling.max_replicas) \
        == (0.5, 2.5, 2)


def test_replica_start_failure_is_the_error_its_constructor_raised():
    from locallama.cluster.deploy import replica_error

    message = ("The deployment failed to start 3 times in a row. Error:\nTraceback:\n"
               '  File "replica.py", line 60, in __init__\n'
               "locallama.errors.BadModelFile: /m/blobs/sha256-ab: the file is truncated\n")
    error = replica_error("broken:latest", message)
    assert type(error) is BadModelFile and str(error) == "/m/blobs/sha256-ab: the file is truncated"
    other = replica_error("tiny:latest", "Traceback:\nMemoryError: out of memory\n")
    assert type(other) is LocallamaError
    assert str(other) == "cannot start a replica of tiny:latest: MemoryError: out of memory"


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the cluster extra is not installed "
                                      "(pip install 'locallama[cluster]')")


def _env(home: Path, port: int, **extra: str) -> dict[str, str]:
    return {"LOCALLAMA_HOME": str(home), "LOCALLAMA_MODELS": str(home / "models"),
            "LOCALLAMA_HOST": f"127.0.0.1:{port}", **extra}


@needs_ray
def test_an_unknown_model_to_deploy_stops_before_ray_starts(tmp_path: Path):
    import ray

    from locallama.cluster.start import start

    assert not ray.is_initialized()
    with pytest.raises(InvalidRequest, match=r"LOCALLAMA_CLUSTER_MODELS: model 'nope:latest'"):
        start(None, _env(tmp_path, free_port(), LOCALLAMA_CLUSTER_MODELS="nope"), num_cpus=1)
    assert not ray.is_initialized()


@needs_ray
def test_a_taken_port_stops_before_ray_starts(tmp_path: Path):
    import ray

    from locallama.cluster.start import start

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(LocallamaError, match="already in use"):
            start(None, _env(tmp_path, port), num_cpus=1)
    assert not ray.is_initialized()


@needs_ray
def test_a_model_whose_replicas_cannot_start_answers_its_error_every_time(
        tmp_path: Path, tiny_gguf: Path):
    """A stored blob truncated after create: the first request's deploy fails (Serve
    retries the replica 3 times); the answer is the replica's BadModelFile, not Serve's
    "Failed to update the deployments", and the failed application is not left behind
    (a second request used to wait forever for its replicas).  Another model answers."""
    import httpx

    from locallama.cluster.start import start, stop

    home = tmp_path / "home"
    runtime = local_runtime(home, ("tiny", tiny_gguf), ("broken", tiny_gguf))
    try:
        blob = runtime.store.get("broken").model_path
    finally:
        runtime.close()
    broken = tmp_path / "broken.gguf"  # its own blob: same bytes, a changed tail
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    broken.write_bytes(bytes(data))
    runtime = local_runtime(home, ("broken", broken))
    try:
        path = runtime.store.get("broken").model_path
    finally:
        runtime.close()
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    running = start(None, _env(home, free_port()), num_cpus=4)
    try:
        for _ in range(2):
            r = httpx.post(running.url + "/api/generate", timeout=120, json={
                "model": "broken", "prompt": "hi", "stream": False,
                "options": {"num_predict": 2}})
            assert r.status_code == 500, r.text
            assert r.json()["code"] == "bad_model_file", r.text
            assert "truncated or corrupt" in r.json()["error"]
        r = httpx.post(running.url + "/api/generate", timeout=120, json={
            "model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
        assert r.status_code == 200 and r.json()["eval_count"] == 2, r.text
    finally:
        stop(running)


@needs_ray
@pytest.mark.xfail(strict=True, reason="a model scaled to zero whose replicas can no longer "
                   "start (its blob went bad meanwhile): Serve retries the replica forever "
                   "(UNHEALTHY) and the request, through the cached deployment handle, waits "
                   "for a replica that never comes instead of answering the error")
def test_a_model_that_cannot_come_back_from_zero_answers_its_error(
        tmp_path: Path, tiny_gguf: Path):
    import httpx

    from locallama.cluster.start import start, stop
    from waiting import poll

    home = tmp_path / "home"
    copy = tmp_path / "own.gguf"  # its own blob, to spoil later
    data = bytearray(tiny_gguf.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    runtime = local_runtime(home, ("spoilt", copy))
    try:
        path = runtime.store.get("spoilt").model_path
    finally:
        runtime.close()
    running = start(None, _env(home, free_port(), LOCALLAMA_KEEP_ALIVE="1s"), num_cpus=4)
    body = {"model": "spoilt", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    try:
        r = httpx.post(running.url + "/api/generate", timeout=120, json=body)
        assert r.status_code == 200, r.text
        poll(lambda: not httpx.get(running.url + "/api/cluster", timeout=30).json()["replicas"],
             "the model scales to zero", timeout=120)
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 2)
        r = httpx.post(running.url + "/api/generate", timeout=45, json=body)
        assert r.status_code == 500 and r.json()["code"] == "bad_model_file", r.text
    finally:
        stop(running)
