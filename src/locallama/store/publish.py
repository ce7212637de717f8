"""A GGUF in the blob folder becomes a model: its small layers, the config blob with
the fields Ollama writes, and the manifest, written last.

Below every source (bundled, URL, Hugging Face, import) and ``create``, so each of
them imports it and none imports another for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from locallama.errors import BadModelFile, PullError
from locallama.gguf_info import GGUFInfo
from locallama.progress import Progress, ProgressEvent
from locallama.store import manifests as mf
from locallama.store.names import ModelName
from locallama.store.store import ModelRecord, Store
from locallama.units import format_parameter_count

#: (model file, its digest or None) -> None: the engine's trial load
#: (``engine/load_check.py``), passed down by the runtime so the store never imports
#: the engine; raises InvalidModelFile for a file llama.cpp cannot load.
LoadCheck = Callable[[Path, str | None], None]


def checked(store: Store, check: LoadCheck | None, digest: str, what: str,
            report: Progress) -> None:
    """A pulled model blob passes ``check`` before its manifest is written; else
    PullError naming ``what`` and the cause, and the blob (unless a model holds it)
    is removed so the store is as it was."""
    if check is None:
        return
    report(ProgressEvent("checking that llama.cpp loads the model"))
    try:
        check(store.blobs.path(digest), digest)
    except BadModelFile as exc:
        if digest not in store.referenced_digests():
            store.blobs.remove(digest)
        raise PullError(f"{what} is not a usable model: {exc}") from None


def publish(store: Store, name: ModelName, digest: str, info: GGUFInfo, params: dict,
            license_text: str | None, report: Progress, projectors: tuple[str, ...] = ()
            ) -> ModelRecord:
    """Write the small layers, the config and, last, the manifest of a stored GGUF
    (with ``projectors``, stored vision projector blobs, as projector layers)."""
    layers = [mf.Layer(mf.MEDIA_MODEL, digest, store.blobs.size(digest))]
    layers += [mf.Layer(mf.MEDIA_PROJECTOR, p, store.blobs.size(p)) for p in projectors]
    if params:
        layers.append(mf.Layer(mf.MEDIA_PARAMS, *store.add_json_blob(params)))
    if license_text:
        layers.append(mf.Layer(mf.MEDIA_LICENSE, *store.blobs.add_bytes(license_text.encode())))
    manifest = gguf_manifest(store, info, layers)
    report(ProgressEvent("writing manifest"))
    store.write_manifest(name, manifest)
    report(ProgressEvent(f"stored as {name.display}"))
    report(ProgressEvent("success"))
    return store.get(name)


def gguf_manifest(store: Store, info: GGUFInfo, layers: list[mf.Layer]) -> mf.Manifest:
    """The manifest of ``layers`` (blobs already stored), with its config blob written."""
    config = model_config(info, [la.digest for la in layers])
    return mf.Manifest(config=mf.Layer(mf.CONFIG_MEDIA_TYPE, *store.add_json_blob(config)),
                       layers=tuple(layers))


def model_config(info: GGUFInfo, diff_ids: list[str]) -> dict:
    """The config blob, with the fields Ollama writes and reads back in /api/show."""
    return {
        "model_format": "gguf",
        "model_family": info.architecture,
        "model_families": [info.architecture],
        "model_type": format_parameter_count(info.parameter_count),
        "file_type": info.file_type,
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
