"""The in-process Runtime: the store and the engine in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locallama.engine.loader import ModelLoader
from locallama.engine.params import GenerationStats
from locallama.engine.templates import FallbackTemplate, Template, select_template
from locallama.errors import InvalidRequest, ModelNotFound, NotSupported
from locallama.options import Options, parse_parameters, resolve_options
from locallama.runtime.base import (
    ChatRequest,
    Chunk,
    Embeddings,
    GenerateRequest,
    ModelDetails,
    Progress,
)
from locallama.settings import Settings
from locallama.store import ModelEntry, ModelRecord, Store, parse_name
from locallama.store.create import create_model
from locallama.store.modelfile import Modelfile, parse_modelfile
from locallama.store.sources import bundled_names
from locallama.store.sources import pull as pull_model

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel

_ROLES = {"system", "user", "assistant", "tool"}


class LocalRuntime:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.store = Store(self.settings.models_dir)
        self.loader = ModelLoader()

    # -- inference ----------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        record = self._record(request.model)
        options = resolve_options(record.params, request.options)
        model, load_ns = self.loader.get(record.model_path, options)
        if request.suffix:
            raise NotSupported("suffix (fill-in-the-middle) is not supported yet")
        stops: tuple[str, ...] = ()
        if request.raw:
            text = request.prompt
        else:
            template = self._template(record, model, request.template)
            system = request.system if request.system is not None else record.system
            if isinstance(template, FallbackTemplate):
                # A base model completes text: the prompt goes in as written.
                text = f"{system}\n\n{request.prompt}" if system else request.prompt
            else:
                messages = ([{"role": "system", "content": system}] if system else [])
                messages.append({"role": "user", "content": request.prompt})
                rendered = template.render(messages)
                text, stops = rendered.prompt, rendered.stops
        if request.context:
            tokens = list(request.context) + model.tokenize(text, add_bos=False)
        else:
            tokens = model.tokenize(text)  # raw prompts may spell special tokens too
        return self._stream(model, tokens, options, stops, load_ns)

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        record = self._record(request.model)
        options = resolve_options(record.params, request.options)
        model, load_ns = self.loader.get(record.model_path, options)
        messages = [_check_message(m) for m in request.messages]
        preamble = list(record.messages)
        if record.system and not any(m["role"] == "system" for m in messages):
            preamble.insert(0, {"role": "system", "content": record.system})
        rendered = self._template(record, model).render(preamble + messages)
        tokens = model.tokenize(rendered.prompt)
        return self._stream(model, tokens, options, rendered.stops, load_ns)

    def _stream(self, model: LoadedModel, tokens: list[int], options: Options,
                template_stops: tuple[str, ...], load_ns: int) -> Iterator[Chunk]:
        stops = tuple(dict.fromkeys((*options.stop, *template_stops)))
        started = time.perf_counter_ns()
        stats = GenerationStats()
        with model.lock:
            for text in model.generate(tokens, options, stops, stats):
                yield Chunk(text=text)
        yield Chunk(
            done=True,
            done_reason=stats.done_reason,
            prompt_eval_count=stats.prompt_eval_count,
            prompt_eval_duration=stats.prompt_eval_duration,
            eval_count=stats.eval_count,
            eval_duration=stats.eval_duration,
            load_duration=load_ns,
            total_duration=time.perf_counter_ns() - started + load_ns,
            context=list(stats.tokens),
        )

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None) -> Embeddings:
        record = self._record(model)
        opts = resolve_options(record.params, options)
        started = time.perf_counter_ns()
        loaded, load_ns = self.loader.get(record.model_path, opts, embedding=True)
        with loaded.lock:
            vectors, count = loaded.embed(inputs, truncate)
        return Embeddings(vectors, count, time.perf_counter_ns() - started, load_ns)

    def tokenize(self, model: str, text: str) -> list[int]:
        return self._loaded(model).tokenize(text)

    def detokenize(self, model: str, tokens: list[int]) -> str:
        return self._loaded(model).detokenize(tokens)

    # -- the store --------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        return self.store.list()

    def show(self, model: str) -> ModelDetails:
        record = self._record(model)
        info = self.loader.info(record.model_path)
        parameters = [
            (k, v) for k, vs in record.params.items()
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        modelfile = Modelfile(
            from_=str(record.model_path),
            template=record.template,
            system=record.system,
            parameters=[(k, _param_text(v)) for k, v in parameters],
            messages=[(m.get("role", ""), m.get("content", "")) for m in record.messages],
            licenses=list(record.licenses),
        )
        return ModelDetails(
            name=record.name.display,
            digest=record.digest,
            size=record.size,
            architecture=info.architecture,
            parameter_count=info.parameter_count,
            context_length=info.context_length,
            embedding_length=info.embedding_length,
            quantization=info.file_type,
            template=record.template or info.chat_template,
            system=record.system,
            parameters=dict(record.params),
            messages=list(record.messages),
            licenses=list(record.licenses),
            modelfile=f"# Modelfile generated by \"locallama show\"\n{modelfile.render()}",
            model_info=dict(info.metadata),
            modified_at=record.modified.isoformat(),
        )

    def create(self, model: str, modelfile: str, base_dir: Path,
               progress: Progress | None = None) -> None:
        name = parse_name(model)
        parsed = parse_modelfile(modelfile)
        if parsed.template:
            select_template(parsed.template, None)  # refuse a broken template up front
        resolve_options(parse_parameters(parsed.parameters), strict=True)  # ranges too
        create_model(self.store, name, parsed, base_dir, progress)

    def copy(self, source: str, destination: str) -> None:
        self.store.copy(source, destination)

    def delete(self, model: str) -> None:
        record = self._record(model)
        self.loader.unload(record.model_path)
        self.store.delete(record.name)

    def pull(self, model: str, progress: Progress | None = None) -> None:
        pull_model(self.store, parse_name(model), progress)

    def close(self) -> None:
        self.loader.close()

    # -- helpers ----------------------------------------------------------------

    def _record(self, model: str) -> ModelRecord:
        name = parse_name(model)
        try:
            return self.store.get(name)
        except ModelNotFound:
            offline = bundled_names()
            hint = f"try 'locallama pull {offline[0]}'" if offline else ""
            raise ModelNotFound(name.display, hint) from None

    def _loaded(self, model: str) -> LoadedModel:
        record = self._record(model)
        return self.loader.get(record.model_path, resolve_options(record.params))[0]

    def _template(self, record: ModelRecord, model: LoadedModel,
                  override: str | None = None) -> Template:
        bos = model.token_text(model.llm.token_bos()) if model.llm.token_bos() >= 0 else ""
        eos = model.token_text(model.llm.token_eos()) if model.llm.token_eos() >= 0 else ""
        return select_template(override or record.template, model.info.chat_template, bos, eos)


def _check_message(message: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise InvalidRequest("each message must be an object with role and content")
    role = message.get("role")
    if role not in _ROLES:
        raise InvalidRequest(f"invalid message role {role!r}: use system, user, assistant or tool")
    content = message.get("content", "")
    if not isinstance(content, str):
        raise InvalidRequest("message content must be a string")
    return {**message, "content": content}


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
