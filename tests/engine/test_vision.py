"""Images through the scheduler: a tiny projector (tests/tinyvision.py) beside the tiny
model, a prompt with images tokenized by mtmd and evaluated as embeddings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locallama.engine.job import Job
from locallama.engine.model import LoadedModel
from locallama.engine.params import ContextParams
from locallama.engine.scheduler import Scheduler
from locallama.engine.vision_types import MARKER, spans_with_data
from locallama.errors import BadModelFile, InvalidRequest
from locallama.gguf_info import read_gguf_info
from locallama.options import resolve_options
from tinyvision import IMAGE_TOKENS, png_bytes, write_tiny_projector


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_projector(tmp_path_factory.mktemp("vision") / "mmproj.gguf")


def open_vision(model_path: Path, projector: Path, num_parallel: int = 2,
                num_batch: int = 32) -> LoadedModel:
    params = ContextParams(num_ctx=256, num_batch=num_batch, num_gpu=0, use_mmap=True,
                           threads=2, num_parallel=num_parallel, projector=str(projector))
    model = LoadedModel(model_path, read_gguf_info(model_path), params)
    model.scheduler = Scheduler(model)
    return model


@pytest.fixture
def model(tiny_gguf: Path, projector: Path) -> Iterator[LoadedModel]:
    loaded = open_vision(tiny_gguf, projector)
    yield loaded
    loaded.close()


def image_job(model: LoadedModel, text: str, images: list[bytes], **options) -> Job:
    tokens, found = model.tokenize_images(text, images)
    return Job(tokens, resolve_options({"num_predict": 8, "temperature": 0, **options}),
               images=spans_with_data(found, images))


def run(model: LoadedModel, job: Job) -> str:
    return "".join(piece.text for piece in model.scheduler.submit(job))


def test_the_marker_is_mtmds_own() -> None:
    from llama_cpp import mtmd_cpp

    assert mtmd_cpp.mtmd_default_marker().decode() == MARKER


def test_an_image_adds_the_projectors_image_tokens(model: LoadedModel) -> None:
    tokens, found = model.tokenize_images(f"hello {MARKER} world", [png_bytes(1)])
    assert len(found) == 1
    start, n, _ = found[0]
    assert n == IMAGE_TOKENS
    assert sum(1 for t in tokens if t < 0) == IMAGE_TOKENS
    assert all(t < 0 for t in tokens[start:start + n])
    two, found2 = model.tokenize_images(f"hello {MARKER}{MARKER} world",
                                        [png_bytes(1), png_bytes(2)])
    assert [f[1] for f in found2] == [IMAGE_TOKENS, IMAGE_TOKENS]
    assert sum(1 for t in two if t < 0) == 2 * IMAGE_TOKENS
    job = image_job(model, f"hello {MARKER} world", [png_bytes(1)])
    run(model, job)
    assert job.stats.prompt_eval_count == len(tokens)
    assert job.stats.eval_count > 0


def test_two_images_give_two_answers(tiny_gguf: Path, projector: Path) -> None:
    model = open_vision(tiny_gguf, projector, num_parallel=1)
    try:
        answers = {seed: run(model, image_job(model, f"{MARKER} look", [png_bytes(seed)],
                                              num_predict=12))
                   for seed in (1, 2)}
        again = run(model, image_job(model, f"{MARKER} look", [png_bytes(1)], num_predict=12))
    finally:
        model.close()
    assert answers[1] != answers[2]
    assert again == answers[1]


def test_the_cache_is_kept_for_the_same_image_only(tiny_gguf: Path, projector: Path) -> None:
    model = open_vision(tiny_gguf, projector, num_parallel=1)
    try:
        first = image_job(model, f"{MARKER} look at this", [png_bytes(1)])
        run(model, first)
        same = image_job(model, f"{MARKER} look at this", [png_bytes(1)])
        run(model, same)
        other = image_job(model, f"{MARKER} look at this", [png_bytes(2)])
        run(model, other)
    finally:
        model.close()
    image_start = first.images[0].start
    assert same.stats.prompt_eval_count == 1  # all but the last token came from the cache
    assert other.stats.prompt_eval_count == len(other.prompt) - image_start


def test_an_image_at_the_prompts_end_starts_the_answer(model: LoadedModel) -> None:
    # raw prompt ending in the image's own tokens: mtmd adds <end_of_image> after it,
    # so cut the prompt at the image's end to make it the last thing evaluated
    job = image_job(model, f"hello {MARKER}", [png_bytes(3)])
    end = job.images[0].end
    job = Job(job.prompt[:end], job.options, images=job.images)
    run(model, job)
    assert job.stats.eval_count > 0


def test_a_corrupt_image_is_refused(model: LoadedModel) -> None:
    with pytest.raises(InvalidRequest, match="image 1 could not be read"):
        model.tokenize_images(f"{MARKER} hi", [b"not an image at all"])
    with pytest.raises(InvalidRequest, match="image places"):
        model.tokenize_images("no marker", [png_bytes(1)])


def test_a_bad_span_or_a_long_prompt_is_refused(model: LoadedModel) -> None:
    job = image_job(model, f"{MARKER} hi", [png_bytes(1)])
    bad = Job([5, 6, 7], job.options, images=job.images)
    with pytest.raises(InvalidRequest, match="do not match"):
        model.scheduler.submit(bad)
    long = image_job(model, f"{MARKER} " + "word " * 300, [png_bytes(1)])
    with pytest.raises(InvalidRequest, match="never truncated"):
        model.scheduler.submit(long)


def test_an_image_larger_than_a_batch_is_refused(tiny_gguf: Path, projector: Path) -> None:
    model = open_vision(tiny_gguf, projector, num_batch=8)
    try:
        with pytest.raises(InvalidRequest, match="num_batch"):
            model.scheduler.submit(image_job(model, f"{MARKER} hi", [png_bytes(1)]))
    finally:
        model.close()


def test_a_cancelled_image_request_frees_its_slot(tiny_gguf: Path, projector: Path) -> None:
    model = open_vision(tiny_gguf, projector, num_parallel=1)
    try:
        endless = image_job(model, f"{MARKER} go", [png_bytes(4)], num_predict=100_000)
        endless.grammar = "root ::= [a-z ] root"
        pieces = model.scheduler.submit(endless)
        next(pieces)
        pieces.close()
        deadline = time.monotonic() + 10
        while model.scheduler.active() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert model.scheduler.active() == 0
        after = image_job(model, f"{MARKER} next", [png_bytes(5)])
        assert run(model, after) is not None and after.stats.eval_count > 0
    finally:
        model.close()


def test_a_text_job_runs_beside_an_image_job(model: LoadedModel) -> None:
    from concurrent.futures import ThreadPoolExecutor

    text = Job(model.tokenize("the quick brown fox"),
               resolve_options({"num_predict": 8, "temperature": 0}))
    alone = run(model, Job(list(text.prompt), text.options))
    with ThreadPoolExecutor(2) as pool:
        image = pool.submit(run, model, image_job(model, f"{MARKER} hi", [png_bytes(6)]))
        beside = pool.submit(run, model, text)
        assert beside.result() == alone
        image.result()


def test_a_projector_for_another_model_is_refused(tiny_gguf: Path, tmp_path: Path) -> None:
    wrong = write_tiny_projector(tmp_path / "wrong.gguf", projection_dim=32)
    with pytest.raises(BadModelFile, match="projector"):
        open_vision(tiny_gguf, wrong)
