"""The in-process Runtime: the store and the engine in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locallama import metrics
from locallama.engine.grammar import grammar_for
from locallama.engine.loader import ModelLoader
from locallama.engine.render import Renderer
from locallama.engine.templates import FallbackTemplate, Template, select_template
from locallama.engine.tools import parse_tool_calls, template_supports_tools
from locallama.errors import BadModelFile, InvalidRequest, ModelNotFound, NotSupported
from locallama.gguf_info import GGUFInfo
from locallama.options import Options, parse_keep_alive, parse_parameters, resolve_options
from locallama.runtime.base import (
    ChatRequest,
    Chunk,
    Embeddings,
    GenerateRequest,
    KeepAlive,
    LoadedModelInfo,
    ModelDetails,
    Progress,
    Score,
    TokenLogprob,
)
from locallama.settings import Settings
from locallama.store import ModelEntry, ModelRecord, Store, parse_name
from locallama.store.create import Quantize, create_model
from locallama.store.modelfile import Modelfile, parse_modelfile
from locallama.store.sources import bundled_names, pull_url
from locallama.store.sources import pull as pull_model
from locallama.units import format_parameter_count

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel
    from locallama.engine.scheduler import Job

_ROLES = {"system", "user", "assistant", "tool"}


class LocalRuntime:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.store = Store(self.settings.models_dir)
        self.loader = ModelLoader(num_parallel=self.settings.num_parallel,
                                  max_loaded=self.settings.max_loaded_models,
                                  flash_attention=self.settings.flash_attention,
                                  max_queue=self.settings.max_queue)
        # Chat templates render in worker processes under these limits.
        self.renderer = Renderer(self.settings.template_timeout,
                                 self.settings.template_max_bytes)

    # -- inference ----------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        record = self._record(request.model)
        options = resolve_options(record.params, request.options)
        if request.suffix:
            raise NotSupported("suffix (fill-in-the-middle) is not supported yet")
        _check_images(record, request.images)

        def build(model: LoadedModel) -> tuple[list[int], tuple[str, ...]]:
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
                    messages = [{"role": "system", "content": system}] if system else []
                    messages.append({"role": "user", "content": request.prompt})
                    rendered = template.render(messages, renderer=self.renderer,
                                               model=record.name.display)
                    text, stops = rendered.prompt, rendered.stops
            if request.context:
                return list(request.context) + model.tokenize(text, add_bos=False), stops
            return model.tokenize(text), stops  # raw prompts may spell special tokens too

        return self._run(record, options, build, _Shape(
            keep_alive=self._keep_alive(request.keep_alive),
            grammar=grammar_for(request.format),
            top_logprobs=request.top_logprobs if request.logprobs or request.echo else None,
            echo=request.echo, truncate=request.truncate, shift=request.shift,
        ))

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        record = self._record(request.model)
        options = resolve_options(record.params, request.options)
        messages = [_check_message(m) for m in request.messages]
        for message in messages:
            _check_images(record, message.get("images"))
        preamble = list(record.messages)
        if record.system and not any(m["role"] == "system" for m in messages):
            preamble.insert(0, {"role": "system", "content": record.system})
        tools = request.tools or None
        tool_names = {t.get("function", {}).get("name") for t in tools or []}

        def build(model: LoadedModel) -> tuple[list[int], tuple[str, ...]]:
            template = self._template(record, model)
            if tools and not template_supports_tools(template.source):
                raise InvalidRequest(f"model '{record.name.display}' does not support tools")
            rendered = template.render(preamble + messages, tools=tools,
                                       renderer=self.renderer, model=record.name.display)
            return model.tokenize(rendered.prompt), rendered.stops

        return self._run(record, options, build, _Shape(
            keep_alive=self._keep_alive(request.keep_alive),
            grammar=grammar_for(request.format),
            top_logprobs=request.top_logprobs if request.logprobs else None,
            tool_names=tool_names if tools else None,
            truncate=request.truncate, shift=request.shift,
        ))

    def _run(self, record: ModelRecord, options: Options,
             build: Callable[[LoadedModel], tuple[list[int], tuple[str, ...]]],
             shape: _Shape) -> Iterator[Chunk]:
        """The one streaming path under generate and chat (and so under both faces)."""
        from locallama.engine.scheduler import Job  # llama.cpp loads on first use

        started = time.perf_counter_ns()
        use = self.loader.use(record.model_path, options, name=record.name.display,
                              digest=record.digest, keep_alive=shape.keep_alive)
        with use as (model, load_ns):
            tokens, template_stops = build(model)
            job = Job(tokens, options, tuple(dict.fromkeys((*options.stop, *template_stops))),
                      grammar=shape.grammar, top_logprobs=shape.top_logprobs,
                      score_top=(shape.top_logprobs or 0) if shape.echo else None, score_from=0,
                      truncate=shape.truncate, shift=shape.shift)
            held: list[str] = []  # with tools the answer is parsed whole before it is sent
            first = True
            first_at = 0
            with closing(model.scheduler.submit(job)) as pieces:
                for piece in pieces:
                    first_at = first_at or time.perf_counter_ns()
                    if shape.tool_names is not None:
                        held.append(piece.text)
                        continue
                    yield Chunk(text=piece.text, logprobs=piece.logprobs,
                                prompt_logprobs=job.prompt_scores if first else None)
                    first = False
            tool_calls = None
            if shape.tool_names is not None:
                content, tool_calls = parse_tool_calls("".join(held), shape.tool_names)
                if content:
                    yield Chunk(text=content)
        stats = job.stats
        metrics.observe_generation(  # into the current request's /metrics, if any
            record.name.display, stats.prompt_tokens, stats.eval_count,
            (job.prompt_started - job.started) / 1e9 if job.prompt_started else None,
            (first_at - started) / 1e9 if first_at else None, stats.eval_duration / 1e9)
        warnings = []
        if stats.truncated:
            warnings.append(f"the prompt was truncated to fit num_ctx={model.params.num_ctx}")
        yield Chunk(
            done=True,
            done_reason=stats.done_reason,
            prompt_eval_count=stats.prompt_eval_count,
            prompt_eval_duration=stats.prompt_eval_duration,
            eval_count=stats.eval_count,
            eval_duration=stats.eval_duration,
            load_duration=load_ns,
            total_duration=time.perf_counter_ns() - started,
            context=list(stats.tokens),
            prompt_logprobs=job.prompt_scores if first else None,
            tool_calls=tool_calls or None,
            prompt_tokens=stats.prompt_tokens,
            warnings=warnings,
        )

    def score(self, model: str, pairs: list[tuple[str, str]],
              options: dict[str, Any] | None = None,
              progress: Callable[[int], None] | None = None) -> list[Score]:
        from locallama.engine.scheduler import Job

        groups: list[list[int]] = []  # runs of pairs with one context: one slot, one prefix
        for i, (context, _) in enumerate(pairs):
            if groups and pairs[groups[-1][0]][0] == context:
                groups[-1].append(i)
            else:
                groups.append([i])
        results: list[Score | None] = [None] * len(pairs)

        def run(loaded: LoadedModel, opts: Options, indices: list[int],
                tick: Callable[[], None]) -> None:
            head, tail = _split_trailing_space(pairs[indices[0]][0])
            context_tokens = loaded.tokenize(head)
            if not context_tokens:
                raise InvalidRequest("an empty context needs a model that adds a BOS token")
            for i in indices:
                whole = loaded.tokenize(head + tail + pairs[i][1])
                continuation = whole[len(context_tokens):]
                if not continuation:
                    raise InvalidRequest(f"pair {i}: the continuation is empty")
                scores = _scored(loaded, Job([*context_tokens, *continuation], opts,
                                             score_top=1, score_from=len(context_tokens),
                                             truncate=False))
                results[i] = Score(
                    logprob=float(sum(r.logprob for r in scores)),
                    greedy=all(r.top and r.logprob >= r.top[0].logprob - 1e-6
                               for r in scores),
                    token_logprobs=[r.logprob for r in scores])
                tick()

        self._fan_out(model, {**(options or {}), "num_predict": 0}, groups, run, progress)
        return [r for r in results if r is not None]

    def score_tokens(self, model: str, windows: list[list[int]], score_from: int,
                     options: dict[str, Any] | None = None,
                     progress: Callable[[int], None] | None = None) -> list[list[float]]:
        """Log-probabilities of each window's tokens from ``score_from`` on.

        Windows are token ids taken as they are (no BOS added) and evaluated apart, on
        a context of the longest window: what perplexity needs, exactly as llama.cpp
        lays its chunks out."""
        from locallama.engine.scheduler import Job

        if not windows:
            return []
        if score_from < 1 or any(len(w) <= score_from for w in windows):
            raise InvalidRequest(f"every window needs tokens after position {score_from}")
        results: list[list[float]] = [[] for _ in windows]

        def run(loaded: LoadedModel, opts: Options, i: int, tick: Callable[[], None]) -> None:
            job = Job(list(windows[i]), opts, score_top=0, score_from=score_from,
                      truncate=False)
            results[i] = [r.logprob for r in _scored(loaded, job)]
            tick()

        # The scheduler keeps one cell free for an answer: n tokens need num_ctx n + 1.
        wanted = {**(options or {}), "num_predict": 0,
                  "num_ctx": max(len(w) for w in windows) + 1}
        self._fan_out(model, wanted, list(range(len(windows))), run, progress)
        return results

    def _fan_out(self, model: str, wanted: dict[str, Any], items: list,
                 work: Callable[[LoadedModel, Options, Any, Callable[[], None]], None],
                 progress: Callable[[int], None] | None) -> None:
        """Run ``work(loaded, options, item, tick)`` for every item on up to num_parallel
        threads, the model held throughout; ``tick`` counts one unit done for
        ``progress``."""
        from concurrent.futures import ThreadPoolExecutor

        record = self._record(model)
        opts = resolve_options(record.params, wanted)
        done, lock = 0, threading.Lock()

        def tick() -> None:
            nonlocal done
            with lock:
                done += 1
                if progress:
                    progress(done)

        with self.loader.use(record.model_path, opts, name=record.name.display,
                             digest=record.digest, keep_alive=self._keep_alive(None)
                             ) as (loaded, _):
            workers = max(1, len(loaded.scheduler.slots))
            with ThreadPoolExecutor(workers, thread_name_prefix="score") as pool:
                list(pool.map(lambda item: work(loaded, opts, item, tick), items))

    def load(self, model: str, keep_alive: KeepAlive = None,
             options: dict[str, Any] | None = None) -> None:
        record = self._record(model)
        options = resolve_options(record.params, options)
        with self.loader.use(record.model_path, options, name=record.name.display,
                             digest=record.digest, keep_alive=self._keep_alive(keep_alive)):
            pass

    def unload(self, model: str) -> None:
        self.loader.unload(self._record(model).model_path)

    def waiting(self) -> dict[str, int]:
        """Requests waiting for a free sequence, by loaded model name (for /metrics)."""
        return {e.name: scheduler.waiting() for e in self.loader.entries()
                if (scheduler := getattr(e.model, "scheduler", None)) is not None}

    def ps(self) -> list[LoadedModelInfo]:
        infos = []
        for entry in self.loader.entries():
            expires = None if entry.expires_at is None and entry.keep_alive is None else (
                datetime.fromtimestamp(entry.expires_at or time.time() + (entry.keep_alive or 0),
                                       tz=UTC))
            info = entry.model.info
            infos.append(LoadedModelInfo(
                name=entry.name, digest=entry.digest, size=entry.size, expires_at=expires,
                context_length=entry.model.params.num_ctx,
                details={"format": "gguf", "family": info.architecture,
                         "families": [info.architecture],
                         "parameter_size": format_parameter_count(info.parameter_count),
                         "quantization_level": info.file_type},
            ))
        return infos

    def _keep_alive(self, value: KeepAlive) -> float | None:
        return parse_keep_alive(value, self.settings.keep_alive)

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None, keep_alive: KeepAlive = None
              ) -> Embeddings:
        record = self._record(model)
        opts = resolve_options(record.params, options)
        started = time.perf_counter_ns()
        use = self.loader.use(record.model_path, opts, embedding=True,
                              name=record.name.display, digest=record.digest,
                              keep_alive=self._keep_alive(keep_alive))
        with use as (loaded, load_ns):
            vectors, count = loaded.embed(inputs, truncate)
        return Embeddings(vectors, count, time.perf_counter_ns() - started, load_ns)

    def tokenize(self, model: str, text: str) -> list[int]:
        with self._use(model) as loaded:
            return loaded.tokenize(text)

    def detokenize(self, model: str, tokens: list[int]) -> str:
        with self._use(model) as loaded:
            return loaded.detokenize(tokens)

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
            capabilities=_capabilities(info, record.template or info.chat_template),
        )

    def create(self, model: str, modelfile: str, base_dir: Path,
               progress: Progress | None = None, quantize: str | None = None,
               imatrix: Path | None = None) -> None:
        name = parse_name(model)
        parsed = parse_modelfile(modelfile)
        self.store.sweep()  # what a killed writer left
        if parsed.template:  # refuse a broken template up front (compiled in a worker)
            select_template(parsed.template, None).check(renderer=self.renderer,
                                                         model=name.display)
        resolve_options(parse_parameters(parsed.parameters), strict=True)  # ranges too
        step = None
        if quantize:
            from locallama.engine.quantize import parse_quant_type, quantize_file

            qtype = parse_quant_type(quantize)

            def quantizer(source, target, info, qtype, report) -> None:
                quantize_file(source, target, info, qtype, imatrix, progress=report)

            step = Quantize(qtype, quantizer)
        elif imatrix is not None:
            raise InvalidRequest("an importance matrix is used only when quantizing")
        create_model(self.store, name, parsed, base_dir, progress, step)

    def copy(self, source: str, destination: str) -> None:
        self.store.copy(source, destination)

    def delete(self, model: str) -> None:
        try:
            record = self._record(model)
        except BadModelFile:  # a broken model can always be removed
            self.store.delete(parse_name(model))
            return
        self.loader.unload(record.model_path)
        self.store.delete(record.name)

    def pull(self, model: str, progress: Progress | None = None) -> None:
        self.store.sweep()  # what a killed writer left; resumable downloads stay
        if model.startswith(("http://", "https://")):
            pull_url(self.store, model, progress)
            return
        pull_model(self.store, parse_name(model), progress, self.settings.registry,
                   self.settings.hf_endpoint)

    def has_blob(self, digest: str) -> bool:
        return self.store.blobs.has(digest)

    def add_blob(self, digest: str, data: Iterable[bytes]) -> None:
        self.store.blobs.add_stream(data, expected=digest)

    def blob_path(self, digest: str) -> Path:
        path = self.store.blobs.path(digest)
        if not path.is_file():
            raise InvalidRequest(f"blob {digest} has not been uploaded")
        return path

    def close(self) -> None:
        """Stop the template workers and unload the models (those still inside a
        llama.cpp call are left for the process's end: see ``ModelLoader.close``)."""
        self.renderer.close()
        self.loader.close()

    # -- helpers ----------------------------------------------------------------

    def _record(self, model: str) -> ModelRecord:
        name = parse_name(model)
        metrics.note_model(name.display)  # the access log's "model"
        try:
            return self.store.get(name)
        except ModelNotFound:
            offline = bundled_names()
            hint = f"try 'locallama pull {offline[0]}'" if offline else ""
            raise ModelNotFound(name.display, hint) from None

    @contextmanager
    def _use(self, model: str) -> Iterator[LoadedModel]:
        record = self._record(model)
        with self.loader.use(record.model_path, resolve_options(record.params),
                             name=record.name.display, digest=record.digest,
                             keep_alive=self._keep_alive(None)) as (loaded, _):
            yield loaded

    def _template(self, record: ModelRecord, model: LoadedModel,
                  override: str | None = None) -> Template:
        return select_template(override or record.template, model.info.chat_template,
                               model.bos_text, model.eos_text)


@dataclass(frozen=True)
class _Shape:
    """How a request wants its stream: everything beyond prompt and options."""

    keep_alive: float | None
    grammar: str | None = None
    top_logprobs: int | None = None  # None: no logprobs
    echo: bool = False
    tool_names: set[str] | None = None  # None: no tools
    truncate: bool = True
    shift: bool = True


def _scored(loaded: LoadedModel, job: Job) -> list[TokenLogprob]:
    """Run a scoring job (num_predict 0) to its end; the logprobs it kept."""
    with closing(loaded.scheduler.submit(job)) as pieces:
        for _ in pieces:
            pass
    return job.prompt_scores or []


def _split_trailing_space(context: str) -> tuple[str, str]:
    """Spaces at the context's end belong to the continuation (" Paris", not " " "Paris")."""
    head = context.rstrip(" ")
    return head, context[len(head):]


def _capabilities(info: GGUFInfo, template: str | None) -> list[str]:
    """What the model can do, in Ollama's words."""
    if f"{info.architecture}.pooling_type" in info.metadata:
        return ["embedding"]  # an embedding model (BERT-like) does not complete text
    return ["completion", "tools"] if template_supports_tools(template) else ["completion"]


def _check_images(record: ModelRecord, images: list[str] | None) -> None:
    if not images:
        return
    if record.projectors:
        raise NotSupported("vision models are not supported yet")
    raise InvalidRequest(f"model '{record.name.display}' does not support images")


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
