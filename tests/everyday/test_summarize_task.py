"""summarize: whole when it fits; map over parts then reduce (recursively) when not."""

import re
from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.everyday.summarize import summarize
from locallama.settings import Settings
from wordruntime import WordRuntime


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=tmp_path / "models", recipes_dir=tmp_path / "recipes")


def labels(prompt: str) -> str:
    """A fake summary: the part labels (P3, ...) that the prompt contains, in order."""
    found = re.findall(r"\bP\d+\b", prompt)
    return " ".join(found) if found else "EMPTY"


def test_text_that_fits_is_summarized_in_one_call(settings):
    runtime = WordRuntime(lambda prompt: "the summary")
    out: list[str] = []
    result = summarize(runtime, "m", settings, "A short text.", length="short", num_ctx=4096,
                       on_text=out.append)
    assert result == "the summary" and "".join(out).strip() == "the summary"
    (prompt,) = runtime.prompts
    assert "A short text." in prompt and "two or three sentences" in prompt
    assert runtime.requests[0].options["num_predict"] == 160


def test_long_text_is_mapped_then_reduced_in_order(settings):
    paragraphs = [f"P{i} " + "lorem ipsum dolor " * 20 for i in range(30)]
    text = "\n\n".join(paragraphs)
    runtime = WordRuntime(labels)
    progress: list[str] = []
    out: list[str] = []
    result = summarize(runtime, "m", settings, text, length="short", num_ctx=600,
                       max_tokens=40, on_text=out.append, on_progress=progress.append)
    maps = [p for p in runtime.prompts if "part" in p and "of a longer document" in p]
    combines = [p for p in runtime.prompts if "summaries of consecutive parts" in p]
    assert len(maps) > 3 and combines
    # every paragraph went into exactly one part, in order
    assert [label for p in maps for label in re.findall(r"\bP\d+\b", p.split("Text:")[1])] == [
        f"P{i}" for i in range(30)]
    assert "part 1 of" in maps[0] and f"part {len(maps)} of {len(maps)}" in maps[-1]
    # the final answer carries every part's label, in order, and only it streamed
    assert result.split() == [f"P{i}" for i in range(30)]
    assert "".join(out).strip() == result
    assert progress[0].startswith("summarizing part 1 of")
    assert any(m.startswith("combining") for m in progress)


def test_reduce_runs_in_rounds_when_the_summaries_do_not_fit_at_once(settings):
    text = "\n\n".join(f"P{i} " + "word " * 40 for i in range(40))
    runtime = WordRuntime(lambda prompt: labels(prompt) + " and so on" * 8)
    progress: list[str] = []
    result = summarize(runtime, "m", settings, text, length="short", num_ctx=420,
                       max_tokens=80, on_progress=progress.append)
    assert any("groups" in m for m in progress)  # more than one round of combining
    assert all(len(p.split()) + 1 <= 420 - 80 for p in runtime.prompts)  # each one fitted
    assert re.findall(r"P\d+", result) == [f"P{i}" for i in range(40)]


def test_bad_length(settings):
    with pytest.raises(InvalidRequest, match="--length"):
        summarize(WordRuntime(), "m", settings, "x", length="tiny", num_ctx=4096)
