"""Parse and render Ollama's Modelfile format.

A Modelfile is a list of ``INSTRUCTION argument`` lines; instructions are
case-insensitive and a line starting with ``#`` is a comment.  An argument is
bare (the rest of the line, stripped), double-quoted on one line (a backslash
before a quote stands for the quote), or triple-quoted (three double quotes,
verbatim, may span lines).  As in Ollama, a quoted argument is closed by the
quotes that end its line, so quotes inside need no escapes.

Modelfiles come from strangers (shared on the web, sent to the server), so every
problem is a ``ModelfileError`` naming the 1-based line, never a traceback.
Values stay strings here: typing parameters is done by ``locallama.options``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from locallama.errors import ModelfileError

INSTRUCTIONS = ("FROM", "ADAPTER", "PARAMETER", "TEMPLATE", "SYSTEM", "MESSAGE", "LICENSE")
ROLES = ("system", "user", "assistant", "tool")
_TRIPLE = '"""'


@dataclass
class Modelfile:
    """What a Modelfile says; ``parse_modelfile(m.render()) == m`` for any valid ``m``."""

    from_: str
    adapter: str | None = None
    #: further FROM lines: vision projector files (mmproj GGUFs, as Ollama takes them)
    projectors: list[str] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (role, content)
    licenses: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Modelfile text in the shape ``ollama show --modelfile`` prints.

        Each value gets the lightest quoting that reads back exactly.  The format
        has no escapes inside triple quotes, so two kinds of multi-line value
        cannot round-trip: one with a line (other than its last) that ends in
        ``\"\"\"`` plus optional spaces, and one containing ``\\r\\n`` (read back as
        ``\\n``, so Modelfiles saved on Windows parse the same).
        """
        out = [f"FROM {_quote(self.from_)}"]
        out.extend(f"FROM {_quote(p)}" for p in self.projectors)
        if self.adapter is not None:
            out.append(f"ADAPTER {_quote(self.adapter)}")
        if self.template is not None:
            out.append(f"TEMPLATE {_quote(self.template)}")
        if self.system is not None:
            out.append(f"SYSTEM {_quote(self.system)}")
        for name, value in self.parameters:
            quoted = _quote(value)
            if name == "stop" and quoted == value:
                quoted = f'"{value}"'  # stop strings read better quoted, as Ollama shows them
            out.append(f"PARAMETER {name} {quoted}")
        out.extend(f"MESSAGE {role} {_quote(content)}" for role, content in self.messages)
        out.extend(f"LICENSE {_TRIPLE}{text}{_TRIPLE}" for text in self.licenses)
        return "\n".join(out) + "\n"


def _quote(value: str) -> str:
    """Bare when the value survives stripping, else double or triple quotes."""
    if "\n" in value or '"' in value:
        return f"{_TRIPLE}{value}{_TRIPLE}"  # exact for any single-line value
    if value and value == value.strip():
        return value
    return f'"{value}"'


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; raise ``ModelfileError`` naming the line on any problem."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    from_: tuple[str, int] | None = None
    projectors: list[str] = []
    adapter: tuple[str, int] | None = None
    template: str | None = None
    system: str | None = None
    parameters: list[tuple[str, str]] = []
    messages: list[tuple[str, str]] = []
    licenses: list[str] = []
    seen_any = False
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        seen_any = True
        word, rest = _split_word(line)
        instruction = word.upper()
        if instruction not in INSTRUCTIONS:
            raise ModelfileError(
                f"unknown instruction '{word[:40]}' (expected one of {', '.join(INSTRUCTIONS)})",
                line=lineno,
            )
        key = ""
        if instruction in ("PARAMETER", "MESSAGE"):
            key, rest = _split_word(rest)
            key = key.lower()
            if not key:
                what = "a name and a value" if instruction == "PARAMETER" else "a role and content"
                raise ModelfileError(f"{instruction} needs {what}", line=lineno)
            if instruction == "MESSAGE" and key not in ROLES:
                raise ModelfileError(
                    f"MESSAGE role '{key}' is not one of {', '.join(ROLES)}", line=lineno
                )
        label = f"{instruction} {key}".rstrip()
        value, i = _read_value(lines, i, rest, lineno, label)

        if instruction in ("FROM", "ADAPTER"):
            if not value:
                raise ModelfileError(f"{instruction} needs a value", line=lineno)
            if instruction == "FROM" and from_ is not None:
                projectors.append(value)  # a projector file; create checks that it is one
                continue
            earlier = from_ if instruction == "FROM" else adapter
            if earlier is not None:
                raise ModelfileError(
                    f"a second {instruction} (the first is on line {earlier[1]}); "
                    f"a Modelfile has only one",
                    line=lineno,
                )
            if instruction == "FROM":
                from_ = (value, lineno)
            else:
                adapter = (value, lineno)
        elif instruction == "TEMPLATE":
            template = value
        elif instruction == "SYSTEM":
            system = value
        elif instruction == "PARAMETER":
            parameters.append((key, value))
        elif instruction == "MESSAGE":
            messages.append((key, value))
        else:
            licenses.append(value)

    if not seen_any:
        raise ModelfileError("Modelfile is empty: it needs at least a FROM line")
    if from_ is None:
        raise ModelfileError("no FROM line: say which model to build on, e.g. 'FROM llama3.2'")
    return Modelfile(
        from_=from_[0],
        adapter=adapter[0] if adapter else None,
        projectors=projectors,
        template=template,
        system=system,
        parameters=parameters,
        messages=messages,
        licenses=licenses,
    )


def _split_word(text: str) -> tuple[str, str]:
    """First whitespace-separated word, and the rest with its leading space removed."""
    parts = text.split(None, 1)
    return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")


def _read_value(lines: list[str], i: int, rest: str, lineno: int, label: str) -> tuple[str, int]:
    """One argument starting in ``rest``; returns it and the index of the next line."""
    if rest.startswith(_TRIPLE):
        body = rest[len(_TRIPLE) :]
        parts = []
        while True:
            end = body.rstrip()
            if end.endswith(_TRIPLE):
                parts.append(end[: -len(_TRIPLE)])
                return "\n".join(parts), i
            parts.append(body)
            if i >= len(lines):
                raise ModelfileError(
                    f'{label}: unterminated """ string (the closing """ must end a line)',
                    line=lineno,
                )
            body = lines[i]
            i += 1
    value = rest.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise ModelfileError(
                f'{label}: unterminated quote (use """ for text that spans lines)', line=lineno
            )
        return value[1:-1].replace('\\"', '"'), i
    if not value:
        raise ModelfileError(f"{label} needs a value", line=lineno)
    return value, i


def read_modelfile(path: Path) -> Modelfile:
    """Read and parse a Modelfile, turning I/O and encoding problems into ModelfileError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelfileError(f"cannot read Modelfile {path}: no such file") from None
    except IsADirectoryError:
        raise ModelfileError(f"cannot read Modelfile {path}: it is a directory") from None
    except OSError as exc:
        raise ModelfileError(f"cannot read Modelfile {path}: {exc.strerror or exc}") from None
    # a UTF-16 BOM is what Windows PowerShell's '>' writes; Ollama reads those too
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ModelfileError(
            f"{path} is not {encoding.upper()} text (bad byte at offset {exc.start})",
            line=data.count(b"\n", 0, exc.start) + 1 if encoding == "utf-8" else None,
        ) from None
    return parse_modelfile(text)


__all__ = ["INSTRUCTIONS", "ROLES", "Modelfile", "parse_modelfile", "read_modelfile"]
