"""Pull from an Ollama registry: the OCI distribution protocol Ollama speaks.

``GET /v2/<namespace>/<model>/manifests/<tag>`` gives the manifest (config +
layers: model, template, system, params, license, ...); each blob comes from
``GET /v2/<namespace>/<model>/blobs/<digest>``, which may redirect to a CDN.
The manifest is validated before anything is fetched (its digests become file
names), every blob is verified as it lands, and the manifest is written last,
so a pull that fails leaves the store's models as they were.
"""

from __future__ import annotations

import httpx

from locallama.errors import BadModelFile, ModelNotFound, PullError
from locallama.gguf_info import read_gguf_info
from locallama.progress import Progress, ProgressEvent
from locallama.store import manifests as mf
from locallama.store.download import fetch_blob, http_client
from locallama.store.names import DEFAULT_HOST, ModelName
from locallama.store.publish import LoadCheck, checked
from locallama.store.store import ModelRecord, Store

MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
))
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def registry_url(name: ModelName, default_registry: str, insecure: bool = False) -> str:
    """Where ``name``'s registry answers: the configured one for Ollama's own host,
    else https://<host>; http:// for a registry on this machine, or for any host when
    ``insecure`` (Ollama's ``pull --insecure``: a registry that speaks plain HTTP)."""
    if name.host.lower() == DEFAULT_HOST:
        return default_registry.rstrip("/")
    plain = insecure or name.host.split(":")[0].lower() in _LOOPBACK
    return f"{'http' if plain else 'https'}://{name.host}"


def pull_from_registry(store: Store, name: ModelName, registry: str, report: Progress,
                       timeout: float = 30.0, check: LoadCheck | None = None,
                       insecure: bool = False) -> ModelRecord:
    """Pull ``name`` from its registry (see ``registry_url``; ``insecure`` allows plain
    HTTP) into ``store``, following https://github.com/ollama/ollama/blob/main/docs/api.md#pull-a-model."""
    base = f"{registry_url(name, registry, insecure)}/v2/{name.namespace}/{name.model}"
    with http_client(timeout) as client:
        report(ProgressEvent("pulling manifest"))
        try:
            response = client.get(f"{base}/manifests/{name.tag}",
                                  headers={"Accept": MANIFEST_TYPES})
        except httpx.TransportError as exc:
            raise PullError(f"cannot reach the registry at {base.split('/v2/')[0]} "
                            f"({exc or type(exc).__name__}); is there a network?") from None
        if response.status_code == 404:
            raise ModelNotFound(name.display, "the registry has no such model or tag")
        if response.status_code >= 400:
            raise PullError(f"the registry answered {response.status_code} for "
                            f"'{name.display}'")
        try:
            manifest = mf.parse_manifest(response.content, f"the registry's manifest for "
                                                           f"'{name.display}'")
        except BadModelFile as exc:
            raise PullError(str(exc)) from None
        try:
            for layer in (*manifest.layers, manifest.config):
                fetch_blob(client, f"{base}/blobs/{layer.digest}", store.blobs, layer.digest,
                           layer.size, report)
        except httpx.TransportError as exc:
            raise PullError(f"the download from {base.split('/v2/')[0]} failed "
                            f"({exc or type(exc).__name__}); run the pull again to resume"
                            ) from None
    report(ProgressEvent("verifying sha256 digest"))
    model = manifest.first(mf.MEDIA_MODEL)
    if model is None:
        raise PullError(f"the registry's manifest for '{name.display}' has no model layer")
    try:
        read_gguf_info(store.blobs.path(model.digest))
    except BadModelFile as exc:
        raise PullError(f"'{name.display}' from the registry is not a usable model: {exc}"
                        ) from None
    checked(store, check, model.digest, f"'{name.display}' from the registry", report)
    report(ProgressEvent("writing manifest"))
    store.write_manifest(name, manifest)
    report(ProgressEvent("success"))
    return store.get(name)
