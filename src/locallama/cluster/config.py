"""How ``serve --ray`` scales each model: LOCALLAMA_CLUSTER_* settings and an
optional TOML file (LOCALLAMA_CLUSTER_CONFIG) with per-model sections.

No Ray import here: the settings are read and checked before a cluster is touched, so
a bad value is one line and nothing starts.

The TOML file::

    min_replicas = 0          # defaults for every model
    max_replicas = 2
    [models."gemma3:270m"]    # one model's own numbers
    min_replicas = 1
    max_replicas = 8
    target_ongoing_requests = 4
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from locallama.errors import InvalidRequest
from locallama.options import parse_keep_alive

#: the per-model fields a TOML file or the environment may set
SCALING_KEYS = ("min_replicas", "max_replicas", "target_ongoing_requests",
                "max_ongoing_requests", "replica_cpus", "replica_gpus")

#: those that count replicas or requests (whole numbers; the rest may be fractions)
_WHOLE = frozenset({"min_replicas", "max_replicas", "max_ongoing_requests"})


@dataclass(frozen=True)
class Scaling:
    """One model's replicas: Ray Serve's autoscaling numbers and each replica's request.

    ``min_replicas`` 0 scales to zero once idle for ``downscale_delay_s`` (the
    keep_alive); ``max_replicas`` equal to ``min_replicas`` is a fixed count.
    ``target_ongoing_requests``: requests per replica the autoscaler aims at (a
    replica's sequences, num_parallel, is a good value); ``max_ongoing_requests``:
    more than this queue at the ingress.  ``replica_cpus``/``replica_gpus`` are the
    replica's Ray resource request (memory comes from the fit estimate)."""

    min_replicas: int = 0
    max_replicas: int = 1
    target_ongoing_requests: float = 4.0
    max_ongoing_requests: int = 16
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    downscale_delay_s: float = 300.0

    def autoscaling(self) -> dict[str, Any]:
        """Ray Serve's ``autoscaling_config`` for this model."""
        return {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "initial_replicas": max(self.min_replicas, 1),
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": 3.0, "downscale_delay_s": self.downscale_delay_s}


@dataclass(frozen=True)
class ClusterConfig:
    """Everything ``serve --ray`` reads: defaults for every model, per-model overrides,
    the models deployed at start, the routing table's size and prefix length, and
    where a worker node keeps its copy of the store (None: its own LOCALLAMA_HOME)."""

    default: Scaling = field(default_factory=Scaling)
    models: Mapping[str, Scaling] = field(default_factory=dict)
    deploy: tuple[str, ...] = ()  # models deployed at start (others on first request)
    affinity_max: int = 100_000  # conversations the router remembers (LRU)
    prefix_chars: int = 2048  # how much of a prompt the routing key covers
    node_home: str | None = None  # a replica's LOCALLAMA_HOME (None: the head's value)
    prefix_routing: bool = True  # False: least busy of two only (to measure what it buys)

    def scaling(self, model: str) -> Scaling:
        """The numbers for ``model`` (its section, else the defaults)."""
        return self.models.get(model, self.default)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClusterConfig:
        """Read LOCALLAMA_CLUSTER_* (and the file LOCALLAMA_CLUSTER_CONFIG names).

        Raises InvalidRequest naming the setting for a value that is not a number,
        out of range, or a TOML file that cannot be read or parsed."""
        env = os.environ if env is None else env
        keep = parse_keep_alive(env.get("LOCALLAMA_KEEP_ALIVE", "") or "5m")
        base: dict[str, Any] = {"downscale_delay_s": 1e9 if keep is None else max(keep, 1.0)}
        table: dict[str, Any] = {}
        if path := env.get("LOCALLAMA_CLUSTER_CONFIG", "").strip():
            table = _read_toml(Path(path).expanduser())
        base |= _scaling_fields(table, f"{env.get('LOCALLAMA_CLUSTER_CONFIG')}")
        for key in SCALING_KEYS:
            name = f"LOCALLAMA_CLUSTER_{key.upper()}"
            if raw := env.get(name, "").strip():
                base[key] = _number(name, raw, int if key in _WHOLE else float)
        default = _checked(Scaling(**base), "LOCALLAMA_CLUSTER_*")
        models = {}
        sections = table.get("models") or {}
        if not isinstance(sections, dict):
            raise InvalidRequest("LOCALLAMA_CLUSTER_CONFIG: models must be a table of "
                                 '[models."NAME"] sections')
        for model, section in sections.items():
            if not isinstance(section, dict):
                raise InvalidRequest(
                    f"LOCALLAMA_CLUSTER_CONFIG: [models.{model!r}] must be a table")
            models[_model_key(model)] = _checked(
                replace(default, **_scaling_fields(section, f"[models.{model!r}]")),
                f"[models.{model!r}]")
        deploy = tuple(_model_key(m) for m in env.get("LOCALLAMA_CLUSTER_MODELS", "").split(",")
                       if m.strip())
        node_home = env.get("LOCALLAMA_CLUSTER_NODE_HOME", "").strip() or None
        affinity_max = _positive(env, "LOCALLAMA_CLUSTER_AFFINITY_MAX", 100_000)
        prefix_chars = _positive(env, "LOCALLAMA_CLUSTER_PREFIX_CHARS", 2048)
        routing = env.get("LOCALLAMA_CLUSTER_ROUTING", "").strip().lower() or "prefix"
        if routing not in ("prefix", "least_busy"):
            raise InvalidRequest("LOCALLAMA_CLUSTER_ROUTING must be prefix or least_busy, "
                                 f"not {routing!r}")
        return cls(default, models, deploy, affinity_max, prefix_chars, node_home,
                   routing == "prefix")


def _model_key(name: str) -> str:
    from locallama.store.names import parse_name

    return parse_name(name.strip()).display


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"LOCALLAMA_CLUSTER_CONFIG: cannot read {path}: "
                             f"{exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"LOCALLAMA_CLUSTER_CONFIG: {path} is not TOML: {exc}") from None


def _scaling_fields(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key == "models":
            continue
        if key not in SCALING_KEYS:
            raise InvalidRequest(f"{where}: unknown key {key!r} (known: {', '.join(SCALING_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise InvalidRequest(f"{where}: {key} must be a number, not {value!r}")
        if key in _WHOLE and not isinstance(value, int):
            raise InvalidRequest(f"{where}: {key} must be a whole number, not {value!r}")
        out[key] = value
    return out


def _number(name: str, raw: str, kind: type) -> float:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, not {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    value = int(_number(name, raw, int)) if raw else default
    if value < 1:
        raise InvalidRequest(f"{name} must be at least 1, not {raw!r}")
    return value


def _checked(s: Scaling, where: str) -> Scaling:
    """Ranges Ray Serve would otherwise refuse later with a traceback."""
    problems = []
    if s.min_replicas < 0:
        problems.append("min_replicas must be 0 or more")
    if s.max_replicas < max(s.min_replicas, 1):
        problems.append("max_replicas must be at least 1 and at least min_replicas")
    if not (math.isfinite(s.target_ongoing_requests) and s.target_ongoing_requests > 0):
        problems.append("target_ongoing_requests must be a positive number")
    if s.max_ongoing_requests < 1:
        problems.append("max_ongoing_requests must be at least 1")
    if not (math.isfinite(s.replica_cpus) and s.replica_cpus >= 0):
        problems.append("replica_cpus must be 0 or more")
    if not (math.isfinite(s.replica_gpus) and s.replica_gpus >= 0):
        problems.append("replica_gpus must be 0 or more")
    if problems:
        raise InvalidRequest(f"{where}: {'; '.join(problems)}")
    return s
