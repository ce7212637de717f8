"""Recipes: the bundled files, rendering, user overrides, one-line errors; running one."""

from pathlib import Path

import pytest

from locallama.errors import InvalidRequest
from locallama.everyday.recipes import Recipe, list_recipes, load_recipe
from locallama.everyday.run import answer, base_model_note, task_model
from locallama.runtime.types import ChatRequest, GenerateRequest
from locallama.settings import Settings
from wordruntime import WordRuntime

BUNDLED = ["ask", "code", "commit", "commit_file_summary", "fix", "summarize",
           "summarize_combine", "translate"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=tmp_path / "models", recipes_dir=tmp_path / "recipes")


def write_user_recipe(settings: Settings, name: str, text: str) -> Path:
    settings.recipes_dir.mkdir(parents=True, exist_ok=True)
    path = settings.recipes_dir / f"{name}.toml"
    path.write_text(text)
    return path


def test_every_bundled_recipe_loads(settings):
    recipes = list_recipes(settings)
    assert [r.name for r in recipes] == BUNDLED
    for recipe in recipes:
        assert recipe.origin == "bundled" and recipe.description and recipe.prompt.strip()
        assert recipe.answer_tokens > 0


def test_translate_prompt_carries_text_and_languages(settings):
    recipe = load_recipe("translate", settings)
    prompt = recipe.render(text="Hallo Welt", target_language="French", source_language="German")
    assert "from German into French" in prompt
    assert "\nText:\nHallo Welt\n" in prompt
    assert prompt.rstrip().endswith("Translation into French:")
    without = recipe.render(text="x", target_language="French", source_language="")
    assert "from" not in without.split("into")[0].split("following text")[1]
    assert "translator" in recipe.render_system(text="x")


def test_ask_recipe_cites_source_and_index(settings):
    recipe = load_recipe("ask", settings)
    prompt = recipe.render(question="Where do cats sleep?", passages=[
        {"source": "pets/cats.md", "index": 2, "text": "Cats sleep in boxes."},
        {"source": "notes.txt", "index": 0, "text": "Dogs bark."}])
    assert "[source#index]" in prompt
    assert "[pets/cats.md#2]\nCats sleep in boxes." in prompt
    assert "[notes.txt#0]\nDogs bark." in prompt
    assert prompt.index("pets/cats.md#2]\n") < prompt.index("notes.txt#0")
    assert "Where do cats sleep?" in prompt


def test_commit_recipe_follows_the_style(settings):
    recipe = load_recipe("commit", settings)
    common = {"diff": "diff --git a/x b/x", "files": [], "stat": " x | 1 +",
              "examples": ["feat(x): one"]}
    assert "Conventional Commits" in recipe.render(style="conventional", **common)
    plain = recipe.render(style="imperative", **common)
    assert "Conventional" not in plain and "imperative" in plain
    assert "- feat(x): one" in plain


def test_a_missing_variable_is_a_clear_error(settings):
    recipe = load_recipe("translate", settings)
    with pytest.raises(InvalidRequest, match="recipe 'translate'.*'target_language' is undefined"):
        recipe.render(text="x", source_language="")


def test_rendering_is_sandboxed():
    recipe = Recipe("evil", "", "", "{{ x.__class__.__mro__ }}")
    with pytest.raises(InvalidRequest):
        recipe.render(x="")


def test_a_user_file_overrides_the_bundled_recipe(settings):
    path = write_user_recipe(settings, "fix", 'description = "mine"\nprompt = "FIX: {{ text }}"\n'
                             'answer_tokens = 12\n[options]\ntemperature = 0.5\n')
    recipe = load_recipe("fix", settings)
    assert (recipe.origin, recipe.path, recipe.description) == ("user", str(path), "mine")
    assert recipe.render(text="teh") == "FIX: teh"
    assert recipe.answer_tokens == 12 and recipe.options == {"temperature": 0.5}
    listed = {r.name: r.origin for r in list_recipes(settings)}
    assert listed["fix"] == "user" and listed["translate"] == "bundled"


def test_a_user_can_add_a_new_recipe(settings):
    write_user_recipe(settings, "haiku", 'prompt = "A haiku about {{ topic }}:"\n')
    assert "haiku" in [r.name for r in list_recipes(settings)]
    assert load_recipe("haiku", settings).render(topic="rain") == "A haiku about rain:"


@pytest.mark.parametrize(("text", "problem"), [
    ('prompt = "x\n', "not valid TOML"),
    ('prompt = "x"\ncolour = "red"\n', "unknown key"),
    ('description = 3\nprompt = "x"\n', "'description' must be a string"),
    ('system = "x"\n', "'prompt' is missing"),
    ('prompt = "x"\nanswer_tokens = 0\n', "answer_tokens"),
    ('prompt = "x"\n[options]\ntemperature = "hot"\n', "temperature"),
    ('prompt = "x"\n[options]\nwarp = 9\n', "unknown option"),
    ('prompt = "{% for x in y %}"\n', "'prompt' line 1"),
    ('name = "other"\nprompt = "x"\n', "named fix.toml"),
])
def test_a_broken_recipe_file_is_one_line_naming_the_file(settings, text, problem):
    path = write_user_recipe(settings, "fix", text)
    with pytest.raises(InvalidRequest) as caught:
        load_recipe("fix", settings)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and problem in message


def test_unknown_and_unsafe_names(settings):
    with pytest.raises(InvalidRequest, match="no recipe named 'nope'.*translate"):
        load_recipe("nope", settings)
    with pytest.raises(InvalidRequest, match="invalid recipe name"):
        load_recipe("../etc/passwd", settings)


# -- running a recipe ---------------------------------------------------------------


def test_a_chat_model_gets_system_and_prompt_as_messages(settings):
    runtime = WordRuntime(lambda prompt: "bonjour")
    recipe = load_recipe("translate", settings)
    pieces = []
    text = answer(runtime, "m", recipe, {"text": "hello", "target_language": "French",
                                         "source_language": ""},
                  on_text=pieces.append, options={"temperature": 0.7})
    assert text == " bonjour\n" and "".join(pieces) == text and len(pieces) == 2
    (request,) = runtime.requests
    assert isinstance(request, ChatRequest)
    assert [m.role for m in request.messages] == ["system", "user"]
    assert "translator" in request.messages[0].content
    assert "\nText:\nhello\n" in request.messages[1].content
    # the call's options win over the recipe's; num_predict is the recipe's answer size
    assert request.options["temperature"] == 0.7
    assert request.options["num_predict"] == recipe.answer_tokens
    assert base_model_note(runtime, "m") is None


def test_a_base_model_gets_the_prompt_raw(settings):
    runtime = WordRuntime(lambda prompt: "x", chat_model=False)
    recipe = load_recipe("commit", settings)
    answer(runtime, "base", recipe, {"diff": "d", "files": [], "stat": "s", "style": "imperative",
                                     "examples": []}, options={"num_predict": 5})
    (request,) = runtime.requests
    assert isinstance(request, GenerateRequest) and request.raw
    assert request.prompt.rstrip().endswith("Commit message:")
    assert request.options["num_predict"] == 5
    assert request.options["stop"] == ["\ndiff --git"]
    note = base_model_note(runtime, "base")
    assert note.startswith("base is a base model") and "--model" in note and "\n" not in note


def test_task_model(settings):
    assert task_model(settings, None) == "gemma3:270m"
    assert task_model(settings, "llama3.2") == "llama3.2"


def test_answer_on_the_tiny_fixture_model(runtime, settings):
    recipe = load_recipe("fix", settings)
    text = answer(runtime, "tiny", recipe, {"text": "the cat"},
                  options={"num_predict": 4, "temperature": 0})
    assert isinstance(text, str)
    assert base_model_note(runtime, "tiny") is None  # the fixture has a ChatML template
