"""translate/fix machinery: code blocks kept byte for byte, pieces in order, word diffs."""

from pathlib import Path

import pytest

from locallama.everyday.recipes import load_recipe
from locallama.everyday.rewrite import (
    Trimmed,
    format_word_diff,
    rewrite,
    split_code_blocks,
    word_diff,
)
from locallama.settings import Settings
from wordruntime import WordRuntime

DOC = """# Title

First paragraph with some words.

```python
def greet(name):
    return f"hello {name}"   # keep   these   spaces
```

Second paragraph, after the code.

~~~
raw ~~~ block
```
still code
~~~
    indented text stays prose
Last words.
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=tmp_path / "models", recipes_dir=tmp_path / "recipes")


def test_split_code_blocks_is_lossless_and_finds_the_fences():
    segments = split_code_blocks(DOC)
    assert "".join(s.text for s in segments) == DOC
    code = [s.text for s in segments if s.code]
    assert code[0].startswith("```python\n") and code[0].endswith("```\n")
    assert code[1].startswith("~~~\n") and "```\nstill code\n~~~\n" in code[1]
    assert [s.code for s in segments] == [False, True, False, True, False]


def test_an_unclosed_fence_runs_to_the_end():
    text = "prose\n```\ncode without end\n"
    assert [(s.code, s.text) for s in split_code_blocks(text)] == [
        (False, "prose\n"), (True, "```\ncode without end\n")]
    inline = "use ```x``` inline\n"  # a backtick fence's info string has no backticks
    assert [s.code for s in split_code_blocks(inline)] == [False]


def test_translate_keeps_code_blocks_byte_for_byte_and_order(settings):
    runtime = WordRuntime()  # answers with the piece upper-cased
    streamed: list[str] = []
    result = rewrite(runtime, "m", load_recipe("translate", settings), DOC,
                     {"target_language": "French", "source_language": ""}, num_ctx=4096,
                     on_text=streamed.append)
    assert "".join(streamed) == result
    expected = "".join(s.text if s.code else s.text.upper() for s in split_code_blocks(DOC))
    assert result == expected
    assert 'return f"hello {name}"   # keep   these   spaces' in result
    # the model never saw code
    assert all("def greet" not in p and "still code" not in p for p in runtime.prompts)
    assert len(runtime.prompts) == 3


def test_long_prose_is_split_translated_in_order_and_reassembled(settings):
    paragraphs = [f"paragraph {i} " + "word " * 30 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs) + "\n\n```\ncode\n```\ntail\n"
    runtime = WordRuntime()
    recipe = load_recipe("translate", settings)
    # a small context: the answer room and the prompt leave room for about two paragraphs
    result = rewrite(runtime, "m", recipe, text, {"target_language": "German",
                                                  "source_language": ""},
                     num_ctx=recipe_size(recipe) + 48 + 200 + 70, max_tokens=200)
    assert len(runtime.prompts) > 4  # it was split
    assert result == "".join(s.text if s.code else s.text.upper()
                             for s in split_code_blocks(text))
    order = [int(line.split()[1]) for line in result.splitlines()
             if line.startswith("PARAGRAPH")]
    assert order == list(range(12))
    for prompt in runtime.prompts:  # each piece: whole paragraphs
        body = prompt.split("\nText:\n")[1].split("\n\nTranslation")[0]
        assert body.startswith(("paragraph", "tail"))


def recipe_size(recipe) -> int:
    text = recipe.render(text="", target_language="German", source_language="")
    system = recipe.render_system(text="")
    return len(text.split()) + len(system.split()) + 2


def test_pieces_get_an_answer_cap_from_their_size(settings):
    runtime = WordRuntime()
    rewrite(runtime, "m", load_recipe("fix", settings), "one two three\n", {}, num_ctx=4096)
    assert runtime.requests[0].options["num_predict"] == 2 * 4 + 64
    rewrite(runtime, "m", load_recipe("fix", settings), "one two three\n", {}, num_ctx=4096,
            max_tokens=7)
    assert runtime.requests[1].options["num_predict"] == 7


def test_an_empty_answer_keeps_the_original(settings):
    runtime = WordRuntime(lambda prompt: "")
    assert rewrite(runtime, "m", load_recipe("fix", settings), "keep me\n", {},
                   num_ctx=4096) == "keep me\n"


def test_trimmed_streams_what_strip_would_give():
    out: list[str] = []
    trimmed = Trimmed(out.append)
    for piece in ["\n  ", " Hello", " world \n", "\n", "again", "  \n"]:
        trimmed.feed(piece)
    trimmed.finish()
    assert "".join(out) == "Hello world \n\nagain"


def test_word_diff():
    runs = word_diff("Thiss is a test.\n", "This is a test!\n")
    assert format_word_diff(runs) == "[-Thiss-]{+This+} is a test[-.-]{+!+}\n"
    assert format_word_diff(word_diff("same text", "same text")) == "same text"


def test_a_small_context_still_leaves_room_for_the_input(settings):
    runtime = WordRuntime()
    text = "\n\n".join("word " * 200 for _ in range(6))
    result = rewrite(runtime, "m", load_recipe("translate", settings), text,
                     {"target_language": "German", "source_language": ""}, num_ctx=1024)
    assert result.split() == text.upper().split()
    assert len(runtime.prompts) >= 6  # the answer took half, pieces the rest
    assert all(r.options["num_predict"] <= 512 for r in runtime.requests)
