"""The in-process Runtime: the store and the engine in this process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locallama import metrics
from locallama.engine.grammar import grammar_for
from locallama.engine.job import Job
from locallama.engine.load_check import check_loads
from locallama.engine.loader import ModelLoader
from locallama.engine.render import Renderer
from locallama.engine.templates import select_template
from locallama.errors import (
    BadModelFile,
    InvalidModelFile,
    InvalidRequest,
    ModelNotFound,
    TemplateError,
)
from locallama.gguf_info import estimate_memory, read_gguf_info
from locallama.kvcache import kv_cache_type
from locallama.options import Options, parse_keep_alive, parse_parameters, resolve_options
from locallama.progress import Progress
from locallama.runtime import ranking, scoring
from locallama.runtime.prompt import (
    Prompt,
    chat_messages,
    chat_prompt,
    check_generate,
    generate_prompt,
)
from locallama.runtime.records import loaded_rows, model_details
from locallama.runtime.stream import OutputSplit, StreamShape
from locallama.runtime.types import (
    ChatRequest,
    Chunk,
    Embeddings,
    GenerateRequest,
    KeepAlive,
    LoadedModelInfo,
    ModelDetails,
    ModelEntry,
    Reranking,
    Score,
    TokenizerInfo,
)
from locallama.settings import Settings
from locallama.store import ModelRecord, Store, parse_name
from locallama.store.create import Quantize, create_model
from locallama.store.modelfile import Modelfile
from locallama.store.sources import bundled_names, pull_url
from locallama.store.sources import pull as pull_model

if TYPE_CHECKING:
    from locallama.engine.model import LoadedModel


class LocalRuntime:
    """The Runtime (``runtime/base.py``) over this process's store and engine.

    It owns the model loader (loaded models, memory budget, keep_alive) and the template
    renderer's workers; ``close`` stops both. Prompts are assembled in ``prompt.py``,
    scoring fans out in ``scoring.py``, and ``show``'s and ``ps``'s answers are
    built in ``records.py``; generate and chat stream through the one path ``_run``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.store = Store(self.settings.models_dir)
        self.loader = ModelLoader(num_parallel=self.settings.num_parallel,
                                  max_loaded=self.settings.max_loaded_models,
                                  flash_attention=self.settings.flash_attention,
                                  kv_cache_type=self.settings.kv_cache_type,
                                  repack=self.settings.repack,
                                  batch_padding=self.settings.batch_padding,
                                  max_queue=self.settings.max_queue,
                                  runner=self.settings.runner)
        # Chat templates render in worker processes under these limits.
        self.renderer = Renderer(self.settings.template_timeout,
                                 self.settings.template_max_bytes)

    # -- inference ----------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        """Stream a completion (Ollama's /api/generate), the prompt as ``prompt.py``
        assembles it. Refusals are raised by this call, before any chunk, in this order:
        ModelNotFound, a bad option, suffix or images, keep_alive, format."""
        record = self._record(request.model)
        options = resolve_options(record.params, request.options)
        check_generate(record, request)
        build = partial(generate_prompt, record, request, renderer=self.renderer)
        return self._run(record, options, build, StreamShape(
            keep_alive=self._keep_alive(request.keep_alive),
            grammar=grammar_for(request.format),
            top_logprobs=request.top_logprobs if request.logprobs or request.echo else None,
            echo=request.echo, truncate=request.truncate, shift=request.shift,
            hide_thinking=request.think is False,
        ))

    def chat(self, request: ChatRequest) -> Iterator[Chunk]:
        """Stream a chat answer (Ollama's /api/chat). A thinking model's reasoning comes
        as ``Chunk.thinking`` (dropped when ``think`` is False); with tools, text
        streams until a call opens, the call as ``tool_call_deltas`` while it forms, and
        the whole calls on the final chunk. ``tool_choice`` "none" offers no tools,
        "required" or a name is enforced by a grammar. Refusals are raised by this
        call, as generate's are (messages are checked after the options)."""
        record = self._record(request.model)
        options = resolve_options(record.params, request.options)
        conversation = chat_messages(record, request.messages)
        tools = request.tools or None
        if request.tool_choice == "none":
            tools = None
        if not request.tools and request.tool_choice not in (None, "auto", "none"):
            raise InvalidRequest("tool_choice 'required' or a named function needs tools",
                                 "tool_choice")  # not a call silently left to chance
        choice = request.tool_choice if tools else None
        if choice not in (None, "auto", "required") and choice not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names function {choice!r}, which is not "
                                 "among the tools", "tool_choice")
        build = partial(chat_prompt, record, conversation, tools, renderer=self.renderer,
                        think=request.think,
                        tool_choice=None if choice in (None, "auto") else choice)
        return self._run(record, options, build, StreamShape(
            keep_alive=self._keep_alive(request.keep_alive),
            grammar=grammar_for(request.format),
            top_logprobs=request.top_logprobs if request.logprobs else None,
            tool_names={t.name for t in tools} if tools else None,
            truncate=request.truncate, shift=request.shift,
            hide_thinking=request.think is False,
        ))

    def _run(self, record: ModelRecord, options: Options,
             build: Callable[[LoadedModel], Prompt], shape: StreamShape) -> Iterator[Chunk]:
        """The one streaming path under generate and chat (and so under both faces)."""
        started = time.perf_counter_ns()
        draft = record.params.get("draft_model")  # speculative decoding's draft model
        use = self.loader.use(record.model_path, options, name=record.name.display,
                              digest=record.digest, keep_alive=shape.keep_alive,
                              projector=_projector(record),
                              draft=self._record(draft).model_path if draft else None)
        with use as (model, load_ns):
            prompt = build(model)
            stops = tuple(dict.fromkeys((*options.stop, *prompt.stops)))
            job = Job(prompt.tokens, options, stops,
                      grammar=prompt.grammar or shape.grammar, top_logprobs=shape.top_logprobs,
                      score_top=(shape.top_logprobs or 0) if shape.echo else None, score_from=0,
                      truncate=shape.truncate, shift=shape.shift, special=prompt.special,
                      images=prompt.images)
            split = OutputSplit(prompt, shape)
            first = True
            first_at = 0
            with closing(model.scheduler.submit(job)) as pieces:
                for piece in pieces:
                    first_at = first_at or time.perf_counter_ns()
                    chunk = split.chunk(piece.text)
                    chunk.logprobs = piece.logprobs
                    if first and job.prompt_scores is not None:
                        chunk.prompt_logprobs = job.prompt_scores
                    elif not (chunk.text or chunk.thinking or chunk.tool_call_deltas
                              or chunk.logprobs):
                        continue
                    yield chunk
                    first = False
            tail = split.chunk(None)
            if tail.text or tail.thinking or tail.tool_call_deltas:
                yield tail
            tool_calls = split.calls.calls if split.calls is not None else None
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
            stop_sequence=stats.stop_sequence,
            prompt_eval_count=stats.prompt_eval_count,
            prompt_eval_duration=stats.prompt_eval_duration,
            eval_count=stats.eval_count,
            eval_duration=stats.eval_duration,
            load_duration=load_ns,
            total_duration=time.perf_counter_ns() - started,
            context=[t for t in stats.tokens if t >= 0],  # images' placeholders left out
            prompt_logprobs=job.prompt_scores if first else None,
            tool_calls=tool_calls or None,
            prompt_tokens=stats.prompt_tokens,
            draft_n=stats.draft_n, draft_n_accepted=stats.draft_n_accepted,
            warnings=warnings,
        )

    def score(self, model: str, pairs: list[tuple[str, str]],
              options: dict[str, Any] | None = None,
              progress: Callable[[int], None] | None = None) -> list[Score]:
        """See ``Runtime.score``; the work is ``scoring.score``'s."""
        return scoring.score(partial(self._use, model), pairs, options, progress)

    def score_tokens(self, model: str, windows: list[list[int]], score_from: int,
                     options: dict[str, Any] | None = None,
                     progress: Callable[[int], None] | None = None) -> list[list[float]]:
        """See ``Runtime.score_tokens``; the work is ``scoring.score_tokens``'s."""
        return scoring.score_tokens(partial(self._use, model), windows, score_from, options,
                                    progress)

    def load(self, model: str, keep_alive: KeepAlive = None,
             options: dict[str, Any] | None = None) -> None:
        record = self._record(model)
        options = resolve_options(record.params, options)
        with self.loader.use(record.model_path, options, name=record.name.display,
                             digest=record.digest, keep_alive=self._keep_alive(keep_alive),
                             projector=_projector(record)):
            pass

    def unload(self, model: str) -> None:
        self.loader.unload(self._record(model).model_path)

    def waiting(self) -> dict[str, int]:
        """Requests waiting for a free sequence, by loaded model name (for /metrics)."""
        return {e.name: scheduler.waiting() for e in self.loader.entries()
                if (scheduler := getattr(e.model, "scheduler", None)) is not None}

    def ps(self) -> list[LoadedModelInfo]:
        return loaded_rows(self.loader.entries())

    def estimate(self, model: str, num_ctx: int, num_parallel: int = 1) -> int | None:
        record = self._record(model)
        info = self.loader.info(record.model_path)  # read once per blob
        ctx = min(num_ctx, info.context_length or num_ctx)
        kind = kv_cache_type(str(record.params.get("kv_cache_type") or "")
                             or self.settings.kv_cache_type)
        return estimate_memory(info, ctx, num_parallel, kind.bytes_per_element).total

    def offline_models(self) -> list[str]:
        return bundled_names()

    def _keep_alive(self, value: KeepAlive) -> float | None:
        return parse_keep_alive(value, self.settings.keep_alive)

    def embed(self, model: str, inputs: list[str], truncate: bool = True,
              options: dict[str, Any] | None = None, keep_alive: KeepAlive = None,
              dimensions: int | None = None) -> Embeddings:
        record = self._record(model)
        if self.loader.info(record.model_path).is_reranker:
            raise InvalidRequest(f"{record.name.display} is a reranker: it scores documents "
                                 "(/api/rerank, /v1/rerank) and gives no embeddings", "model")
        opts = resolve_options(record.params, options)
        started = time.perf_counter_ns()
        use = self.loader.use(record.model_path, opts, embedding=True,
                              name=record.name.display, digest=record.digest,
                              keep_alive=self._keep_alive(keep_alive))
        with use as (loaded, load_ns):
            vectors, count = loaded.embed(inputs, truncate)
        size = len(vectors[0]) if vectors else 0
        if dimensions is not None and dimensions != size:
            raise InvalidRequest(f"this model gives {size}-dimensional embeddings; other "
                                 "dimensions are not supported", "dimensions")
        return Embeddings(vectors, count, time.perf_counter_ns() - started, load_ns)

    def rerank(self, model: str, query: str, documents: list[str], top_n: int | None = None,
               options: dict[str, Any] | None = None, keep_alive: KeepAlive = None
               ) -> Reranking:
        record = self._record(model)
        return ranking.rerank(self.loader, record, resolve_options(record.params, options),
                              self._keep_alive(keep_alive), query, documents, top_n)

    def tokenize(self, model: str, text: str, add_special: bool = True) -> list[int]:
        with self._use(model) as (loaded, _):
            return loaded.tokenize(text, add_bos=add_special)

    def token_pieces(self, model: str, tokens: list[int]) -> list[bytes]:
        with self._use(model) as (loaded, _):
            return loaded.pieces(tokens)

    def tokenizer_info(self, model: str) -> TokenizerInfo:
        record = self._record(model)
        info = self.loader.info(record.model_path)
        meta = info.metadata
        with self._use(model) as (loaded, _):
            def text_of(key: str) -> str | None:
                token = meta.get(key)
                if not isinstance(token, int) or not 0 <= token < loaded.n_vocab:
                    return None
                return loaded.pieces([token])[0].decode("utf-8", errors="replace")

            return TokenizerInfo(
                model=record.name.display,
                tokenizer_model=str(meta.get("tokenizer.ggml.model") or ""),
                vocab_size=loaded.n_vocab, context_length=info.context_length,
                bos_token=loaded.bos_text or None, eos_token=loaded.eos_text or None,
                add_bos_token=loaded.bos_id is not None,
                add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
                chat_template=info.chat_template,
                unk_token=text_of("tokenizer.ggml.unknown_token_id"),
                pad_token=text_of("tokenizer.ggml.padding_token_id"))

    def detokenize(self, model: str, tokens: list[int]) -> str:
        with self._use(model) as (loaded, _):
            return loaded.detokenize(tokens)

    def count_chat_tokens(self, request: ChatRequest) -> int:
        """See ``Runtime.count_chat_tokens``: ``chat``'s prompt, assembled and counted."""
        record = self._record(request.model)
        conversation = chat_messages(record, request.messages)
        with self._use(request.model, request.options) as (loaded, _):
            prompt = chat_prompt(record, conversation, request.tools or None, loaded,
                                 renderer=self.renderer)
        return len(prompt.tokens)

    # -- the store --------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        return self.store.list()

    def show(self, model: str) -> ModelDetails:
        record = self._record(model)
        return model_details(record, self.loader.info(record.model_path))

    def create(self, model: str, modelfile: Modelfile, base_dir: Path,
               progress: Progress | None = None, quantize: str | None = None,
               imatrix: Path | None = None) -> None:
        name = parse_name(model)
        parsed = modelfile
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
        check = self._load_check
        if not parsed.template:  # the model file's own chat template will be used
            check = partial(self._check_model_file, model=name.display)
        create_model(self.store, name, parsed, base_dir, progress, step, check,
                     self.settings.converter, projector_check=self._projector_check)

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

    def pull(self, model: str, progress: Progress | None = None,
             insecure: bool = False) -> None:
        self.store.sweep()  # what a killed writer left; resumable downloads stay
        if model.startswith(("http://", "https://")):
            pull_url(self.store, model, progress, self._load_check)
            return
        pull_model(self.store, parse_name(model), progress, self.settings.registry,
                   self.settings.hf_endpoint, self._load_check, insecure)

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

    def _load_check(self, path: Path, digest: str | None) -> None:
        """llama.cpp loads ``path`` in a child, under the settings' time limit."""
        check_loads(path, self.settings.load_check_timeout, digest)

    def _projector_check(self, model: Path, projector: Path) -> None:
        """mtmd loads ``projector`` beside ``model`` in a child, under the same limit."""
        from locallama.engine.vision_check import check_projector

        check_projector(model, projector, self.settings.load_check_timeout)

    def _check_model_file(self, path: Path, digest: str | None, model: str = "") -> None:
        """``_load_check``, then the file's own chat template (``tokenizer.chat_template``)
        compiled in a render worker: a template that does not compile would fail every
        request later, so it is refused now, as the file's fault (InvalidModelFile)."""
        self._load_check(path, digest)
        template = read_gguf_info(path).chat_template
        if not template:
            return
        try:
            select_template(None, template).check(renderer=self.renderer, model=model)
        except TemplateError as exc:
            raise InvalidModelFile(f"the model file's chat template (tokenizer.chat_template) "
                                   f"cannot be used: {exc}") from None

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
    def _use(self, model: str, options: dict[str, Any] | None = None
             ) -> Iterator[tuple[LoadedModel, Options]]:
        """``model`` loaded with its Modelfile options under ``options`` and the default
        keep_alive, held for the ``with`` block: (the model, the resolved options)."""
        record = self._record(model)
        opts = resolve_options(record.params, options)
        with self.loader.use(record.model_path, opts, name=record.name.display,
                             digest=record.digest, keep_alive=self._keep_alive(None),
                             projector=_projector(record)) as (loaded, _):
            yield loaded, opts


def _projector(record: ModelRecord) -> Path | None:
    """The vision projector a generation model is loaded with (its first projector
    layer), or None."""
    return record.projectors[0] if record.projectors else None
