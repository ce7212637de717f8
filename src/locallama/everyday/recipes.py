"""Prompt recipes: readable TOML files, bundled and overridable, rendered in a sandbox.

A task's wording belongs in a file a user can read and change, not in a string
buried in code.  The bundled recipes live in ``locallama/recipes/*.toml``; a file
of the same name in ``settings.recipes_dir`` (``~/.locallama/recipes``) wins.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from locallama.errors import InvalidRequest
from locallama.options import coerce_option
from locallama.settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_KEYS = {"name", "description", "system", "prompt", "answer_tokens", "options"}
_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    keep_trailing_newline=True, autoescape=False,
)

BUNDLED = "bundled"


@dataclass
class Recipe:
    """One task's prompt: a system message, a user prompt (Jinja), answer size, options."""

    name: str
    description: str
    system: str
    prompt: str
    answer_tokens: int = 1024
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = BUNDLED  # "bundled" or "user"
    path: str = ""  # the file it came from, for messages and `recipes list`
    text: str = ""  # the TOML as written, for `recipes show`

    def render(self, **variables: Any) -> str:
        """The user prompt with ``variables`` filled in; a missing one is a clear error."""
        return self._render("prompt", self.prompt, variables)

    def render_system(self, **variables: Any) -> str:
        """The system message, rendered like the prompt (it may use variables too)."""
        return self._render("system", self.system, variables)

    def _render(self, part: str, source: str, variables: dict[str, Any]) -> str:
        try:
            return _ENV.from_string(source).render(**variables)
        except jinja2.UndefinedError as exc:
            raise InvalidRequest(f"recipe '{self.name}' ({part}): {exc.message}") from None
        except (jinja2.TemplateError, SecurityError) as exc:
            raise InvalidRequest(
                f"recipe '{self.name}' ({part}) in {self.path or 'memory'}: {_one_line(exc)}"
            ) from None


def load_recipe(name: str, settings: Settings) -> Recipe:
    """The recipe called ``name``: the user's file if there is one, else the bundled one."""
    if not _NAME.match(name):
        raise InvalidRequest(f"invalid recipe name {name!r}: use letters, digits, '_' and '-'")
    user = settings.recipes_dir / f"{name}.toml"
    if user.is_file():
        return parse_recipe(_read(user), str(user), name, origin="user")
    bundled = _bundled_dir() / f"{name}.toml"
    if bundled.is_file():
        return parse_recipe(bundled.read_text(encoding="utf-8"), str(bundled), name)
    known = ", ".join(recipe_names(settings)) or "none"
    raise InvalidRequest(f"no recipe named '{name}' (known: {known})")


def list_recipes(settings: Settings) -> list[Recipe]:
    """Every recipe by name, a user's override in place of the bundled one."""
    return [load_recipe(n, settings) for n in recipe_names(settings)]


def recipe_names(settings: Settings) -> list[str]:
    """The names of the bundled and the user's recipes (files are not parsed here)."""
    names: set[str] = set()
    for folder in (_bundled_dir(), settings.recipes_dir):
        if folder.is_dir():
            names.update(p.name[:-5] for p in folder.iterdir()
                         if p.name.endswith(".toml") and _NAME.match(p.name[:-5]))
    return sorted(names)


def parse_recipe(text: str, path: str, name: str, origin: str = BUNDLED) -> Recipe:
    """Check a recipe file strictly; any problem is one line naming the file."""

    def bad(problem: str) -> InvalidRequest:
        return InvalidRequest(f"recipe file {path}: {problem}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise bad(f"not valid TOML: {_one_line(exc)}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    strings = {}
    for key in ("name", "description", "system", "prompt"):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise bad(f"'{key}' must be a string")
        strings[key] = value
    if not strings["prompt"].strip():
        raise bad("'prompt' is missing or empty")
    if strings["name"] and strings["name"] != name:
        raise bad(f"'name' is {strings['name']!r} but the file is named {name}.toml")
    answer_tokens = data.get("answer_tokens", 1024)
    if isinstance(answer_tokens, bool) or not isinstance(answer_tokens, int) or answer_tokens < 1:
        raise bad("'answer_tokens' must be a positive whole number")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise bad("[options] must be a table")
    try:
        options = {key: coerce_option(key, value) for key, value in options.items()}
    except InvalidRequest as exc:
        raise bad(str(exc)) from None
    for part in ("system", "prompt"):
        try:
            _ENV.parse(strings[part])
        except jinja2.TemplateSyntaxError as exc:
            raise bad(f"'{part}' line {exc.lineno}: {_one_line(exc)}") from None
    return Recipe(name=name, description=strings["description"], system=strings["system"],
                  prompt=strings["prompt"], answer_tokens=answer_tokens, options=options,
                  origin=origin, path=path, text=text)


def _bundled_dir() -> Path:
    return Path(str(resources.files("locallama") / "recipes"))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"recipe file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidRequest(f"recipe file {path}: {exc.strerror or exc}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
