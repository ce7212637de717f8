"""Build a stored model from a Modelfile (FROM a .gguf file, a safetensors folder or an
existing model)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locallama.errors import BadModelFile, InvalidModelFile, InvalidRequest, NotSupported
from locallama.gguf_info import GGUFInfo, read_gguf_info
from locallama.options import parse_parameters
from locallama.progress import Progress, ProgressEvent, silent
from locallama.store import manifests as mf
from locallama.store.blobs import CHUNK, normalize_digest
from locallama.store.hf_convert import convert_folder
from locallama.store.modelfile import Modelfile
from locallama.store.names import ModelName, parse_name
from locallama.store.partials import locked_temp, storage_errors
from locallama.store.publish import LoadCheck, gguf_manifest
from locallama.store.store import ModelRecord, Store
from locallama.units import format_bytes

#: (source, target, source info, type, progress) -> None; the engine's quantizer
Quantizer = Callable[[Path, Path, GGUFInfo, str, Progress], None]
#: (model file, projector file) -> None, InvalidModelFile when mtmd cannot load the pair
ProjectorCheck = Callable[[Path, Path], None]


@dataclass(frozen=True)
class Quantize:
    """A quantization step in a create: the type and who does it."""

    type: str
    quantizer: Quantizer


def create_model(
    store: Store,
    name: ModelName,
    modelfile: Modelfile,
    base_dir: Path,
    progress: Progress | None = None,
    quantize: Quantize | None = None,
    check: LoadCheck | None = None,
    converter: Path | None = None,
    projector_check: ProjectorCheck | None = None,
) -> ModelRecord:
    """Write the blobs and manifest for ``name``; the store is unchanged on error.

    With ``quantize``, the model data is first rewritten at that type and the
    quantized file is what the model holds (``create --quantize``, ``quantize``).
    A FROM file that is not a valid GGUF raises InvalidModelFile (the caller's file);
    a stored model FROM names that has gone bad raises BadModelFile. With ``check``,
    a new model file (FROM file, quantizer output) is loaded once by llama.cpp before
    the manifest is written; its InvalidModelFile passes through, the blob removed.
    A FROM folder (Hugging Face safetensors) is converted first (``hf_convert``, with
    the converter in ``converter`` or its default folder) into a temporary file that
    is checked, quantized or moved into the store like a FROM file.
    Further FROM lines (``modelfile.projectors``) are vision projector files (GGUF
    architecture "clip"), stored as projector layers in place of the base model's;
    each passes ``projector_check`` with the model file (InvalidModelFile otherwise,
    and the blobs this create added are removed).
    """
    report = progress or silent

    def say(status: str) -> None:
        report(ProgressEvent(status))

    if modelfile.adapter:
        raise NotSupported("ADAPTER is not supported yet: merge the adapter into the GGUF first")
    params = parse_parameters(modelfile.parameters)
    from_, projectors = _split_from(modelfile, base_dir)

    source = source_path(from_, base_dir)
    folder = source is not None and source.is_dir()
    if folder and projectors:
        raise InvalidRequest("a projector FROM needs the model's FROM to be a GGUF file or "
                             "a stored model, not a safetensors folder")
    if folder:
        model_layers, info = _converted(store, source, report, quantize, check, converter)
        base = None
    elif source is not None:
        say(f"reading model file {source}")
        try:
            info = read_gguf_info(source)
        except BadModelFile as exc:  # the caller's file (a path, an uploaded blob)
            raise InvalidModelFile(str(exc)) from None
        if info.architecture == "clip":
            raise InvalidModelFile(f"FROM {from_} is a vision projector, not a model: a "
                                   "Modelfile needs the model's FROM as well")
        model_layers = []
        if quantize is None:  # a quantized model holds only the quantizer's output
            digest = _stored_digest(store, source)
            if digest:  # an uploaded blob: already in the store, verified when it came in
                size = source.stat().st_size
                _check(store, check, source, digest, say, drop=False)
            else:
                say("copying model data")
                digest, size = store.blobs.add_file(source)
                _check(store, check, store.blobs.path(digest), digest, say, drop=True)
            model_layers = [mf.Layer(mf.MEDIA_MODEL, digest, size)]
        base = None
    else:
        base = store.get(parse_name(from_))
        model_layers = [
            la
            for la in base.manifest.layers
            if la.media_type in (mf.MEDIA_MODEL, mf.MEDIA_ADAPTER, mf.MEDIA_PROJECTOR)
        ]
        info = read_gguf_info(base.model_path)
    if quantize is not None and not folder:  # a folder's conversion quantized it
        source_file = source if source is not None else base.model_path
        model_layers, info = _quantized(store, source_file, info, quantize, report, check)
    if projectors:
        model_layers = [la for la in model_layers if la.media_type != mf.MEDIA_PROJECTOR]
        fresh = quantize is not None or (source is not None and not _stored_digest(store, source))
        model_layers += _projector_layers(store, projectors, model_layers, projector_check, say,
                                          drop_model=fresh)

    if "draft_model" in params:
        _check_draft(store, params["draft_model"], info)
    template = modelfile.template if modelfile.template is not None else _get(base, "template")
    system = modelfile.system if modelfile.system is not None else _get(base, "system")
    merged_params = {**(base.params if base else {}), **params}
    messages = [{"role": r, "content": c} for r, c in modelfile.messages] or (
        base.messages if base else []
    )
    licenses = [*(base.licenses if base else []), *modelfile.licenses]

    layers = list(model_layers)
    if template:
        layers.append(_text_layer(store, mf.MEDIA_TEMPLATE, template))
    if system:
        layers.append(_text_layer(store, mf.MEDIA_SYSTEM, system))
    if merged_params:
        layers.append(mf.Layer(mf.MEDIA_PARAMS, *store.add_json_blob(merged_params)))
    if messages:
        layers.append(mf.Layer(mf.MEDIA_MESSAGES, *store.add_json_blob(messages)))
    layers.extend(_text_layer(store, mf.MEDIA_LICENSE, text) for text in licenses)

    manifest = gguf_manifest(store, info, layers)
    say("writing manifest")
    store.write_manifest(name, manifest)
    return store.get(name)


def _split_from(modelfile: Modelfile, base_dir: Path) -> tuple[str, list[Path]]:
    """The FROM lines as (the model's, the projector files): the first FROM is the
    model's unless it is a projector file (GGUF architecture "clip", as Ollama tells
    them apart; its /api/create ``files`` have no order), then the first that is not.
    The other FROM must be a projector (``projector_source``'s errors), one at most."""
    if not modelfile.projectors:
        return modelfile.from_, []
    values = [modelfile.from_, *modelfile.projectors]
    model = values[0]
    if _is_projector(model, base_dir):
        model = next((v for v in values[1:] if not _is_projector(v, base_dir)), model)
    rest = list(values)
    rest.remove(model)
    projectors = [projector_source(v, base_dir) for v in rest]
    if len(projectors) > 1:  # llama.cpp's mtmd loads one: a second would go unused
        raise InvalidRequest(f"FROM {rest[1]}: a model takes one vision projector, and "
                             f"FROM {rest[0]} is already its projector")
    return model, projectors


def _is_projector(value: str, base_dir: Path) -> bool:
    path = (base_dir / Path(value).expanduser()).resolve()
    if not path.is_file():
        return False
    try:
        return read_gguf_info(path).architecture == "clip"
    except BadModelFile:
        return False


def projector_source(value: str, base_dir: Path) -> Path:
    """A further FROM line's file, read as a vision projector: InvalidRequest when it
    names no file, InvalidModelFile when the file is not a GGUF projector (Ollama tells
    a projector by its architecture, "clip")."""
    path = (base_dir / Path(value).expanduser()).resolve()
    if not path.is_file():
        raise InvalidRequest(f"FROM {value}: no such file (a second FROM names a vision "
                             "projector file, an mmproj GGUF)")
    try:
        info = read_gguf_info(path)
    except BadModelFile as exc:
        raise InvalidModelFile(f"FROM {value}: {exc}") from None
    if info.architecture != "clip":
        raise InvalidModelFile(f"FROM {value}: a second FROM must be a vision projector "
                               f"(GGUF architecture 'clip'), not a '{info.architecture}' "
                               "model: one model and its projector files are expected")
    if info.metadata.get("clip.has_vision_encoder") is not True:
        raise InvalidModelFile(f"FROM {value}: the projector has no vision encoder")
    return path


def _projector_layers(store: Store, projectors: list[Path], model_layers: list[mf.Layer],
                      check: ProjectorCheck | None, say: Callable[[str], None],
                      drop_model: bool) -> list[mf.Layer]:
    """Copy each projector into the store and check it loads beside the model; on a
    refusal the blobs this create added (the model's when ``drop_model``, and the
    projectors') go again."""
    model = next(la for la in model_layers if la.media_type == mf.MEDIA_MODEL)
    added = [model.digest] if drop_model else []
    layers = []
    try:
        for path in projectors:
            say(f"copying vision projector {path.name}")
            digest = _stored_digest(store, path)
            if digest is None:
                digest, size = store.blobs.add_file(path)
                added.append(digest)
            else:
                size = path.stat().st_size
            if check is not None:
                say("checking that llama.cpp loads the projector with the model")
                check(store.blobs.path(model.digest), store.blobs.path(digest))
            layers.append(mf.Layer(mf.MEDIA_PROJECTOR, digest, size))
    except BaseException:
        held = store.referenced_digests()
        for digest in added:
            if digest not in held:
                store.blobs.remove(digest)
        raise
    return layers


def _check_draft(store: Store, name: str, info: GGUFInfo) -> None:
    """``PARAMETER draft_model NAME`` names a stored model with the same vocabulary size
    and tokenizer (llama.cpp compares every token's text when both are loaded)."""
    draft = store.get(parse_name(name))  # ModelNotFound names it
    theirs = read_gguf_info(draft.model_path)
    mine_tok = info.metadata.get("tokenizer.ggml.model")
    their_tok = theirs.metadata.get("tokenizer.ggml.model")
    if (theirs.vocab_size, their_tok) != (info.vocab_size, mine_tok):
        raise InvalidRequest(
            f"draft_model {name}: its vocabulary ({theirs.vocab_size} tokens, {their_tok}) "
            f"is not the model's ({info.vocab_size} tokens, {mine_tok}); a draft model must "
            "use the same tokenizer")


def _check(store: Store, check: LoadCheck | None, path: Path, digest: str,
           say: Callable[[str], None], drop: bool) -> None:
    """Run ``check`` on a model blob; when it refuses and ``drop``, remove the blob
    this create added (unless a model holds it), so the store is as it was."""
    if check is None:
        return
    say("checking that llama.cpp loads the model")
    try:
        check(path, digest)
    except BadModelFile:
        if drop and digest not in store.referenced_digests():
            store.blobs.remove(digest)
        raise


def _quantized(store: Store, source: Path, info: GGUFInfo, quantize: Quantize,
               report: Progress, check: LoadCheck | None = None
               ) -> tuple[list[mf.Layer], GGUFInfo]:
    """Quantize ``source`` into a new blob; the model layer that replaces the source's."""
    if info.file_type not in ("F32", "F16", "BF16"):
        report(ProgressEvent(f"warning: requantizing a {info.file_type} model to "
                             f"{quantize.type.upper()} compounds the rounding; quantize from "
                             "F32, F16 or BF16 where you have it"))
    started = time.perf_counter()
    # Locked while llama.cpp writes it (it opens the same path, so the same file),
    # so a sweep by another process leaves it alone, and one after a kill removes it.
    with locked_temp(store.blobs.root, ".quantize-") as (_, tmp):
        with storage_errors(store.blobs.root, partial=tmp):
            quantize.quantizer(source, tmp, info, quantize.type, report)
        new = read_gguf_info(tmp)
        if check is not None:
            report(ProgressEvent("checking that llama.cpp loads the model"))
            check(tmp, None)
        report(ProgressEvent("verifying sha256 digest"))
        digest, size = _move_into_store(store, tmp)
    seconds = time.perf_counter() - started
    report(ProgressEvent(
        f"quantized {info.file_type} {format_bytes(info.file_size)} "
        f"({bits_per_weight(info):.2f} bpw) to {new.file_type} {format_bytes(new.file_size)} "
        f"({bits_per_weight(new):.2f} bpw) in {seconds:.1f} s"))
    return [mf.Layer(mf.MEDIA_MODEL, digest, size)], new


def _converted(store: Store, folder: Path, report: Progress, quantize: Quantize | None,
               check: LoadCheck | None, converter: Path | None
               ) -> tuple[list[mf.Layer], GGUFInfo]:
    """Convert a safetensors folder into a temporary file in the blobs folder (locked,
    so a sweep leaves it alone while it is written and removes it after a kill); then
    quantize it, or check it and rename it into place.  The temporary file is gone
    afterwards whatever happens."""
    with locked_temp(store.blobs.root, ".convert-") as (_, tmp):
        with storage_errors(store.blobs.root, partial=tmp):
            convert_folder(folder, tmp, report, converter)
        try:
            info = read_gguf_info(tmp)
        except BadModelFile as exc:
            raise InvalidModelFile(f"the converter wrote a file llama.cpp cannot read: {exc}"
                                   ) from None
        if quantize is not None:
            return _quantized(store, tmp, info, quantize, report, check)
        if check is not None:
            report(ProgressEvent("checking that llama.cpp loads the model"))
            check(tmp, None)
        report(ProgressEvent("verifying sha256 digest"))
        digest, size = _move_into_store(store, tmp)
    return [mf.Layer(mf.MEDIA_MODEL, digest, size)], info


def bits_per_weight(info: GGUFInfo) -> float:
    """Bits of the file per parameter: what a model costs on disk and in memory."""
    return 8 * info.file_size / info.parameter_count if info.parameter_count else 0.0


def _move_into_store(store: Store, path: Path) -> tuple[str, int]:
    """Hash a file the store may take over, and rename it into place (no copy)."""
    h = hashlib.sha256()
    with storage_errors(store.blobs.root):
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
            os.fsync(f.fileno())  # where a delayed write finds the disk full
        digest = "sha256:" + h.hexdigest()
        size = path.stat().st_size
        target = store.blobs.path(digest)
        if not target.is_file():
            path.chmod(0o644)
            os.replace(path, target)
    return digest, size


def source_path(value: str, base_dir: Path) -> Path | None:
    """FROM names a file (or a safetensors folder) when it looks like a path or one of
    that name exists; None for a model name."""
    looks_like_path = (
        value.startswith((".", "/", "~")) or value.lower().endswith(".gguf") or "\\" in value
    )
    candidate = (base_dir / Path(value).expanduser()).resolve()
    if candidate.is_file() or candidate.is_dir():
        return candidate
    if looks_like_path:
        raise InvalidRequest(f"FROM {value}: no such file")
    return None


def _stored_digest(store: Store, path: Path) -> str | None:
    """The digest of ``path`` when it is one of the store's own blobs."""
    if path.parent != store.blobs.root.resolve() or not path.name.startswith("sha256-"):
        return None
    try:
        return normalize_digest(path.name)
    except InvalidRequest:
        return None


def _text_layer(store: Store, media_type: str, text: str) -> mf.Layer:
    return mf.Layer(media_type, *store.blobs.add_bytes(text.encode()))


def _get(record: ModelRecord | None, attr: str) -> str | None:
    return getattr(record, attr) if record else None


__all__ = ["create_model", "BadModelFile", "LoadCheck", "ProjectorCheck", "Quantize",
           "bits_per_weight"]
