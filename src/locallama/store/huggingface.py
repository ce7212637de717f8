"""Pull a GGUF from a Hugging Face repository: ``hf.co/OWNER/REPO[:QUANT]``.

huggingface_hub reads the repository's file list with each file's size and
LFS sha256; the chosen file then downloads through store/download.py (resumable,
verified against that sha256) from ``<endpoint>/<repo>/resolve/<sha>/<file>``.
The quantization tag matches the file name case-insensitively, as Ollama
accepts it.  Without one, the best quantization that fits this machine's
available memory is chosen, and the choice is reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from locallama.errors import BadModelFile, ModelNotFound, PullError
from locallama.gguf_info import read_gguf_info
from locallama.progress import Progress, ProgressEvent
from locallama.store.download import fetch_blob, http_client
from locallama.store.names import DEFAULT_TAG, ModelName
from locallama.store.publish import LoadCheck, checked, publish
from locallama.store.store import ModelRecord, Store
from locallama.units import format_bytes

HF_HOSTS = ("hf.co", "huggingface.co")
#: Best first: more bits keep more of the original model.
QUALITY = ("F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M",
           "Q4_K_S", "IQ4_NL", "IQ4_XS", "Q4_1", "Q4_0", "Q3_K_L", "Q3_K_M", "IQ3_M", "Q3_K_S",
           "IQ3_XS", "IQ3_XXS", "Q2_K", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class GGUFFile:
    name: str
    size: int
    sha256: str

    @property
    def quantization(self) -> str | None:
        stem = self.name.rsplit("/", 1)[-1].upper()
        for quant in sorted(QUALITY, key=len, reverse=True):  # Q4_K_M before Q4_K
            if re.search(rf"(^|[.\-_]){quant}([.\-_]|$)", stem.removesuffix(".GGUF")):
                return quant
        return None


def is_hf(name: ModelName) -> bool:
    return name.host.lower() in HF_HOSTS


def choose(files: list[GGUFFile], tag: str, memory: int) -> tuple[GGUFFile, str]:
    """The file for ``tag`` (a quantization), or the best that fits ``memory``; and why."""
    if tag.lower() != DEFAULT_TAG:
        matches = [f for f in files if (f.quantization or "").lower() == tag.lower()]
        if not matches:
            have = ", ".join(sorted({f.quantization or f.name for f in files}))
            raise ModelNotFound(tag, f"the repository has no {tag} file; it has: {have}")
        return min(matches, key=lambda f: len(f.name)), f"{tag.upper()} as asked"
    known = [f for f in files if f.quantization]
    ranked = sorted(known, key=lambda f: QUALITY.index(f.quantization))
    for file in ranked:
        need = _need(file)
        if need <= memory:
            return file, (f"{file.quantization}: the best quantization here that fits in "
                          f"{format_bytes(memory)} of available memory (needs about "
                          f"{format_bytes(need)})")
    if ranked:
        smallest = min(ranked, key=lambda f: f.size)
        raise PullError(f"no file in the repository fits in {format_bytes(memory)} of "
                        f"available memory; the smallest, {smallest.quantization}, needs about "
                        f"{format_bytes(_need(smallest))}")
    if len(files) == 1:
        return files[0], "the repository's only GGUF file"
    raise PullError("the repository has several GGUF files and none names its quantization; "
                    "add one as the tag (hf.co/OWNER/REPO:Q4_K_M)")


def _need(file: GGUFFile) -> int:
    """Weights plus room for a default context: the file size and a fifth more."""
    return int(file.size * 1.2)


def pull_from_hf(store: Store, name: ModelName, endpoint: str, report: Progress,
                 memory: Callable[[], int], check: LoadCheck | None = None) -> ModelRecord:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    repo = f"{name.namespace}/{name.model}"
    report(ProgressEvent("pulling manifest"))
    try:
        info = HfApi(endpoint=endpoint).model_info(repo, files_metadata=True)
    except RepositoryNotFoundError:
        raise ModelNotFound(name.display, "no such repository on Hugging Face") from None
    except HfHubHTTPError as exc:
        if _status(exc) in ("401", "404"):  # how the hub says "no such (public) repo"
            raise ModelNotFound(name.display, "no such repository on Hugging Face") from None
        raise PullError(f"Hugging Face answered {_status(exc)} for {repo}") from None
    except (httpx.TransportError, OSError) as exc:
        raise PullError(f"cannot reach Hugging Face at {endpoint} ({exc}); "
                        "is there a network?") from None
    every = [GGUFFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else "")
             for s in info.siblings or [] if s.rfilename.lower().endswith(".gguf")
             and not _SPLIT.search(s.rfilename)]
    files = [f for f in every if "mmproj" not in f.name.lower()]
    if not files:
        raise PullError(f"{repo} has no single-file GGUF model")
    file, why = choose(files, name.tag, memory())
    if not re.fullmatch(r"[0-9a-f]{64}", file.sha256):
        raise PullError(f"{repo}: {file.name} has no sha256 to check the download against")
    report(ProgressEvent(f"using {file.name} ({why})"))
    base = f"{endpoint.rstrip('/')}/{repo}/resolve/{info.sha or 'main'}/"
    digest = _fetch(store, base, file, report)
    try:
        gguf = read_gguf_info(store.blobs.path(digest))
    except BadModelFile as exc:
        raise PullError(f"{file.name} is not a usable model: {exc}") from None
    checked(store, check, digest, file.name, report)
    projectors = ()
    if (mmproj := choose_projector(every, file)) is not None:
        report(ProgressEvent(f"using {mmproj.name} as the vision projector"))
        projector = _fetch(store, base, mmproj, report)
        try:
            if read_gguf_info(store.blobs.path(projector)).architecture != "clip":
                raise BadModelFile("its GGUF architecture is not 'clip'")
            projectors = (projector,)
        except BadModelFile as exc:
            report(ProgressEvent(f"warning: {mmproj.name} is not a vision projector ({exc}); "
                                 "the model is stored without one"))
    return publish(store, name, digest, gguf, {}, None, report, projectors)


#: projector file types, best first, when none matches the model's quantization
_PROJECTOR_QUALITY = ("F16", "BF16", "F32", "Q8_0")


def choose_projector(files: list[GGUFFile], model: GGUFFile) -> GGUFFile | None:
    """The repository's vision projector for ``model`` (a file named ``mmproj``): in the
    model's folder, the one of its quantization, else F16, BF16, F32, Q8_0, else the
    first by name; None when the repository has none."""
    folder = model.name.rpartition("/")[0]
    found = [f for f in files if "mmproj" in f.name.lower()
             and f.name.rpartition("/")[0] == folder and re.fullmatch(r"[0-9a-f]{64}", f.sha256)]
    if not found:
        return None
    for quant in (model.quantization, *_PROJECTOR_QUALITY):
        for f in sorted(found, key=lambda f: f.name):
            if quant and f.quantization == quant:
                return f
    return min(found, key=lambda f: f.name)


def _fetch(store: Store, base: str, file: GGUFFile, report: Progress) -> str:
    """Download ``file`` into the store's blobs (resumable, verified); its digest."""
    digest = f"sha256:{file.sha256}"
    try:
        with http_client() as client:
            fetch_blob(client, base + file.name, store.blobs, digest, file.size, report)
    except httpx.TransportError as exc:
        raise PullError(f"the download from Hugging Face failed ({exc}); run the pull again "
                        "to resume") from None
    report(ProgressEvent("verifying sha256 digest"))
    return digest


def _status(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(getattr(response, "status_code", "an error"))
